"""Benchmark: how much of the test error is shared by several runs, and what averaging
their probabilities gives.

    .venv/bin/python bench/error_overlap.py --models MODELS RUN RUN ...   # seconds
    .venv/bin/python bench/error_overlap.py path/to/run_folder ...         # runs of any registry

Reads the runs' saved Testing predictions (nothing is recomputed). Prints each run's
errors on the official split and the clean test set, how many images are misclassified
by exactly k of the runs, the images every run gets wrong, the probability-average
ensemble of all of them, and how many errors a target accuracy allows. The question it
answers: is a run's remaining error mostly seed noise (different images each time, which
averaging removes) or images that every recipe gets wrong? Prints the machine.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine  # noqa: E402
from core.errors import PipelineError  # noqa: E402
from core.evaluation.interpret import Interpretation  # noqa: E402
from core.registry import Registry  # noqa: E402


def load(registry: Registry, run_id: str) -> Interpretation:
    folder = Path(run_id)
    if folder.is_dir():
        registry, run_id = Registry(folder.parent), folder.name
    elif len(folder.parts) > 1:
        raise SystemExit(f"{folder} is not a run folder")
    try:
        run = registry.get(run_id)
    except PipelineError as exc:
        raise SystemExit(str(exc)) from None
    rows = sorted(run.predictions(), key=lambda row: row["file"])
    if not rows:
        raise SystemExit(f"run {run_id} has no Testing predictions (evaluate it first)")
    return Interpretation.from_rows(rows, run.classes)


def errors(runs: dict[str, Interpretation], target: float) -> None:
    first = next(iter(runs.values()))
    n, n_clean = len(first.files), int(first.clean.sum()) if first.clean is not None else 0
    print(f"{n} Testing images, {n_clean} in the clean test set")
    print(f"{target:.1%} allows at most {int(n * (1 - target))} errors on the official split")
    wrong: Counter[str] = Counter()
    for run_id, interp in runs.items():
        if interp.files != first.files:
            raise SystemExit(f"run {run_id} was evaluated on other images than {next(iter(runs))}")
        miss = interp.y_pred != interp.y_true
        clean = int((miss & interp.clean).sum()) if interp.clean is not None else "?"
        print(f"  {run_id}: {miss.sum()} errors ({1 - miss.mean():.2%}), {clean} on the clean set")
        wrong.update(f for f, m in zip(interp.files, miss) if m)
    shared = Counter(wrong.values())
    print("images misclassified by exactly k runs:", {k: shared[k] for k in range(1, len(runs) + 1)})
    names = first.classes
    truth = dict(zip(first.files, first.y_true))
    for file, _ in sorted(wrong.items()):
        if wrong[file] == len(runs):
            guesses = {names[r.y_pred[r.files.index(file)]] for r in runs.values()}
            print(f"  every run: {file} ({names[truth[file]]} -> {', '.join(sorted(guesses))})")


def ensemble(runs: dict[str, Interpretation]) -> None:
    first = next(iter(runs.values()))
    mean = np.mean([r.probs for r in runs.values()], axis=0)
    miss = mean.argmax(axis=1) != first.y_true
    clean = int((miss & first.clean).sum()) if first.clean is not None else "?"
    print(
        f"probability average of the {len(runs)} runs: {miss.sum()} errors "
        f"({1 - miss.mean():.2%}), {clean} on the clean set"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--models", default="models", help="the registry folder")
    parser.add_argument("--target", type=float, default=0.985, help="accuracy to express in errors")
    parser.add_argument(
        "runs", nargs="+", help="run ids in --models, or run folders, evaluated on the same Testing split"
    )
    args = parser.parse_args()
    print("=== bench/error_overlap.py ===")
    print("machine:", machine())
    registry = Registry(args.models)
    runs = {run_id: load(registry, run_id) for run_id in args.runs}
    errors(runs, args.target)
    ensemble(runs)


if __name__ == "__main__":
    main()
