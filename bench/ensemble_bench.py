"""Benchmark: single runs vs test-time augmentation vs their ensemble.

    .venv/bin/python bench/ensemble_bench.py RUN RUN [RUN ...] --models bench/out/models

For each member: its official and clean test figures (from its evaluation), the same
with TTA (evaluated here), and the latency of one scan with and without TTA. Then the
members' ensemble, created as a registry run, evaluated on both test sets, with its
latency. Members must be evaluated runs of the shared dataset in one registry.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.common import DATASET, machine  # noqa: E402
from core.config import framing_of  # noqa: E402
from core.data.dataset import scan_dataset  # noqa: E402
from core.data.images import load_rgb  # noqa: E402
from core.evaluation.evaluate import evaluate_run, evaluate_tta  # noqa: E402
from core.model.tta import DEFAULT_VIEWS, views  # noqa: E402
from core.registry import Registry  # noqa: E402
from core.serving.inference import Classifier  # noqa: E402
from core.training.ensemble import create_ensemble  # noqa: E402


def latency_ms(classifier: Classifier, images: np.ndarray, tta=(), repeats: int = 15) -> float:
    classifier.probabilities(images[:1], tta=tta)  # warm
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        classifier.probabilities(images[i % len(images)][None], tta=tta)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def row(name: str, metrics: dict, ms: float, seconds: float | None = None) -> str:
    clean = metrics["clean"]
    took = f"{seconds:7.0f}" if seconds is not None else "      -"
    return (
        f"{name:<44} {metrics['accuracy']:8.4f} {metrics['macro_f1']:8.4f} "
        f"{clean['accuracy']:8.4f} {clean['macro_f1']:8.4f} {ms:8.0f} {took}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--models", default="bench/out/models")
    parser.add_argument("--views", default=",".join(DEFAULT_VIEWS))
    parser.add_argument("--reuse-tta", action="store_true", help="keep a member's tta.json for these views")
    args = parser.parse_args()
    print(machine())
    registry = Registry(args.models)
    index = scan_dataset(DATASET)
    chosen = views(args.views.split(","))
    first = registry.get(args.runs[0]).config
    size = int(first["input_size"])
    sample = np.stack([load_rgb(s.path, size, framing_of(first)) for s in index.testing[:15]])
    lines = []
    for run_id in args.runs:
        run = registry.get(run_id)
        if not (run.metrics or {}).get("clean"):  # evaluated before the clean test set existed
            evaluate_run(run, index)
        classifier = Classifier(run)
        lines.append(row(run_id, run.metrics, latency_ms(classifier, sample)))
        start = time.monotonic()
        tta = run.read("tta.json")
        if args.reuse_tta and tta and tta["views"] == [v.name for v in chosen]:
            start = None  # figures from an earlier invocation; no time to report
        else:
            tta = evaluate_tta(run, index, chosen)
        lines.append(
            row(
                f"  + TTA ({len(chosen)} views)",
                tta,
                latency_ms(classifier, sample, chosen),
                None if start is None else time.monotonic() - start,
            )
        )
        print(lines[-2], lines[-1], sep="\n", flush=True)
        del classifier
    start = time.monotonic()
    ensemble = create_ensemble(registry, args.runs, run_id=registry.new_run_id("bench-ensemble"), index=index)
    took = time.monotonic() - start
    lines.append(
        row(
            f"ensemble ({len(args.runs)} runs, equal weights)",
            ensemble.metrics,
            latency_ms(Classifier(ensemble), sample),
            took,
        )
    )
    print(f"\nviews: {', '.join(v.name for v in chosen)}; ensemble run: {ensemble.id}")
    print(f"{'':<44} {'acc':>8} {'macroF1':>8} {'clean':>8} {'cleanF1':>8} {'ms/scan':>8} {'eval s':>7}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
