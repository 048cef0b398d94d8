"""Leave one source out inside the Kaggle set: a second out-of-source figure.

    .venv/bin/python bench/loso.py [--preset quick] [--seed 2028] [--models bench/out/loso/models]
        [--name NAME] [any other option of `python -m core train`, e.g. --framing pad]

The Kaggle set merges figshare, SARTAJ and Br35H (core/data/sources.py says how each image is
assigned, and checks it). Most of SARTAJ's meningioma and pituitary slices are re-encoded
copies of figshare's; this holds out the SARTAJ slices with no copy among the other
collections, trains a run of the given preset on everything else (the held-out slices and
their copies removed from Training and Testing), then scores the run on them with
`python -m core evaluate RUN --data HELDOUT`, exactly as a user scores an external set.
SARTAJ's notumor slices cannot be told from Br35H's by any checked signature, so notumor has
no fold. Prints the held-out figures with 95% intervals beside the run's own Testing
figures, and the machine. Uses symbolic links under bench/out/loso/, never copies.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DATASET, OUT, machine, standin_weights  # noqa: E402
from core.data.audit import cached_audit  # noqa: E402
from core.data.dataset import scan_dataset  # noqa: E402
from core.data.sources import SARTAJ, assign_sources, held_out  # noqa: E402
from core.evaluation.external import LOSO_RECORD, slug  # noqa: E402
from core.intervals import format_interval  # noqa: E402
from core.registry import Registry  # noqa: E402

WORK = OUT / "loso"


def link_tree(files: list[str], source_root: Path, target: Path, strip_split: bool) -> None:
    """Symbolic links to `files` (relative paths Split/class/name) under `target`, as
    Split/class/name, or class/name with `strip_split`."""
    for file in files:
        parts = Path(file).parts
        destination = target.joinpath(*(parts[1:] if strip_split else parts))
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.symlink_to(source_root / file)


def build_fold(cache_root: Path) -> tuple[Path, Path, dict]:
    """The fold's training root (Training and Testing minus the held-out source) and its
    held-out root (class folders), with counts."""
    index = scan_dataset(DATASET)
    audit = cached_audit(index, cache_root)
    sources = assign_sources(index, audit)
    held, removed = held_out(sources, audit, SARTAJ)
    kept = [f for f in audit.files if f not in removed]
    train_root, held_root = WORK / "data", WORK / "heldout-sartaj"
    for folder in (train_root, held_root):
        shutil.rmtree(folder, ignore_errors=True)
    link_tree(kept, index.root, train_root, strip_split=False)
    link_tree(held, index.root, held_root, strip_split=True)
    counts = {
        "held_out": {c: sum(1 for f in held if Path(f).parts[1] == c) for c in index.classes},
        "removed_from_training": sum(1 for f in removed if f.startswith("Training/")),
        "removed_from_testing": sum(1 for f in removed if f.startswith("Testing/")),
    }
    return train_root, held_root, counts


def core(models: Path, *args: str) -> None:
    command = [sys.executable, "-m", "core", "--models", str(models), *args]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=Path(__file__).resolve().parent.parent)


def show(name: str, metrics: dict) -> None:
    ci = metrics.get("intervals") or {}
    print(
        f"{name:44s} n={metrics['n']:5d}  accuracy {format_interval(metrics['accuracy'], ci.get('accuracy'))}"
    )
    for cls, row in metrics["per_class"].items():
        if row["support"]:
            interval = (ci.get("per_class") or {}).get(cls, {}).get("recall")
            print(f"    recall {cls:12s} n={row['support']:4d}  {format_interval(row['recall'], interval)}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--seed", type=int, default=2028)
    parser.add_argument("--models", type=Path, default=WORK / "models")
    parser.add_argument("--name", help="suffix of the run's name, for runs with other options")
    args, train_options = parser.parse_known_args()
    print("=== bench/loso.py ===")
    print("machine:", machine())
    args.models.mkdir(parents=True, exist_ok=True)
    train_root, held_root, counts = build_fold(args.models / ".cache")
    print("fold:", json.dumps(counts))
    run_id = f"loso-sartaj-{args.preset}-s{args.seed}" + (f"-{args.name}" if args.name else "")
    shutil.rmtree(args.models / run_id, ignore_errors=True)
    start = time.monotonic()
    weights = str(standin_weights())
    core(
        args.models,
        "train",
        str(train_root),
        "--preset",
        args.preset,
        "--seed",
        str(args.seed),
        "--weights",
        weights,
        "--run-id",
        run_id,
        *train_options,
    )
    core(args.models, "evaluate", run_id, "--data", str(held_root))
    record = {"held_out": SARTAJ, "entry": slug(held_root), "fold": counts}
    Registry(args.models).get(run_id).write(LOSO_RECORD, record)  # for the Results page
    print(f"train and evaluate: {(time.monotonic() - start) / 60:.1f} min")
    run = args.models / run_id
    metrics = json.loads((run / "metrics.json").read_text())
    show("the run's Testing (held-out source removed)", metrics)
    if clean := metrics.get("clean"):
        show("its clean test set", clean)
    external = json.loads((run / "external" / slug(held_root) / "metrics.json").read_text())
    show("SARTAJ's own slices (never seen, no copies)", external)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
