"""How far a run's figures carry beyond the dataset it was trained and tested on.

Prints, for one trained run, each figure with its 95% interval and the machine:
- official Testing and the clean test set (copy-free: no exact, near or mirrored copy
  of a Training image);
- an external test set (default: ../shared/datasets/external-radiopaedia-dev, which
  has no pituitary class): accuracy, macro recall, recall per class and per MR sequence;
- the shortcut score: what a classifier gets from image properties alone.

The external set is scored, never trained or chosen on. The run's external entry is
written under its folder (external/<slug>/), as `python -m core evaluate RUN --data`
does.

    .venv/bin/python bench/generalisation.py RUN_ID --models models
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import SHARED, machine  # noqa: E402
from core.data.audit import cached_audit  # noqa: E402
from core.data.dataset import scan_dataset  # noqa: E402
from core.data.shortcut import cached_shortcut_score, describe  # noqa: E402
from core.evaluation.external import describe as describe_external  # noqa: E402
from core.evaluation.external import evaluate_external  # noqa: E402
from core.intervals import format_interval  # noqa: E402
from core.registry import Registry  # noqa: E402

EXTERNAL = SHARED / "datasets" / "external-radiopaedia-dev"


def figures(name: str, m: dict) -> None:
    ci = m.get("intervals") or {}
    print(
        f"{name:34s} n={m['n']:5d}  accuracy {format_interval(m['accuracy'], ci.get('accuracy')):22s}"
        f"  macro F1 {format_interval(m['macro_f1'], ci.get('macro_f1'), percent=False)}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--external", type=Path, default=EXTERNAL)
    args = parser.parse_args()
    print("=== bench/generalisation.py ===")
    print("machine:", machine())
    run = Registry(args.models).get(args.run)
    config = run.config
    print(
        f"run {run.id}: input {config['input_size']} px, {config['precision']}, weights "
        f"{Path(config['weights']).name}, seed {config['seed']}, augmentation "
        f"{'on' if config['augment']['enabled'] else 'off'}"
    )
    metrics = run.metrics
    figures("official Testing", metrics)
    figures("clean test set", metrics["clean"])

    start = time.monotonic()
    external = evaluate_external(run, args.external)
    print(f"external: {external['name']}, {external['n']} images ({time.monotonic() - start:.0f} s)")
    print("\n".join(describe_external(external)))

    index = scan_dataset(config["data_dir"])
    audit = cached_audit(index, run.cache_dir)
    print("shortcut score:", describe(cached_shortcut_score(index, audit, run.cache_dir)))
    print("leave-one-source-out: not measured by this script")
    return 0


if __name__ == "__main__":
    sys.exit(main())
