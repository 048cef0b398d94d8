"""Benchmark: the dataset audit on the shared dataset (wall time and what it finds).

    .venv/bin/python bench/audit_bench.py

Runs the audit from scratch (no cache) and prints its wall time, the counts, the
per-class leakage and the clean test set's size, next to PROVENANCE.md's own figures.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DATASET, machine  # noqa: E402
from core.data.audit import run_audit  # noqa: E402
from core.data.dataset import scan_dataset  # noqa: E402

PROVENANCE = {
    "testing_with_copy_in_training": 484,
    "redundant_within_training": 865,
    "redundant_within_testing": 156,
    "label_conflict_groups": 0,
    "leaked_per_class": {"notumor": 370, "meningioma": 109, "pituitary": 5, "glioma": 0},
}


def main() -> None:
    start = time.monotonic()
    index = scan_dataset(DATASET)
    audit = run_audit(index)
    wall = time.monotonic() - start
    summary = audit.summary()
    print("=== bench/audit_bench.py ===")
    print(f"machine: {machine()}")
    print(f"audit of {summary['images']} images from scratch: {wall:.1f} s")
    print(json.dumps({k: v for k, v in summary.items() if k != "per_class"}, indent=1))
    for name, row in summary["per_class"].items():
        print(
            f"  {name:12s} Testing {row['testing']:4d}  with a copy in Training {row['leaked']:4d} "
            f"(PROVENANCE.md: {PROVENANCE['leaked_per_class'][name]})  clean {row['clean']:4d}"
        )
    totals = {k: v for k, v in PROVENANCE.items() if k != "leaked_per_class"}
    print(f"PROVENANCE.md for comparison: {json.dumps(totals)}")


if __name__ == "__main__":
    main()
