"""Benchmark: inference latency, throughput and memory of a trained run.

    .venv/bin/python bench/inference_bench.py [RUN_ID] [--models models]

With the model loaded and warm: median latency of one scan (decode + predict), of one
scan with its Grad-CAM, batch throughput of the app's Classifier against the bare
Keras model in the same process, and the process's resident memory with the model and
all three saliency visualisers built. Uses Testing images of the shared dataset.
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
import psutil  # noqa: E402

from bench.common import DATASET, machine  # noqa: E402
from core.data.dataset import scan_dataset  # noqa: E402
from core.explanation.explain import METHODS, Explainer  # noqa: E402
from core.registry import Registry  # noqa: E402
from core.serving.batch import classify  # noqa: E402
from core.serving.inference import Classifier  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("run", nargs="?")
    p.add_argument("--models", default=None)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    registry = Registry(args.models) if args.models else Registry()
    run = registry.get(args.run) if args.run else registry.completed()[0]
    index = scan_dataset(DATASET)
    files = [s.path for s in index.testing[:: max(1, len(index.testing) // 64)]][:64]
    raw = [f.read_bytes() for f in files]

    rss0 = psutil.Process().memory_info().rss
    classifier = Classifier(run)
    explainer = Explainer(classifier.model)
    image = classifier.prepare(raw[0])
    for method in METHODS:  # build every visualiser once, as the app does
        explainer.heatmap(image, 0, method)
    classify(classifier, [("warm", raw[0])])
    rss = psutil.Process().memory_info().rss

    one = median_ms(lambda: classify(classifier, [("scan", raw[1])]), args.repeats)
    label = int(np.argmax(classifier.probabilities(image)[0]))
    with_cam = median_ms(
        lambda: (classify(classifier, [("scan", raw[1])]), explainer.heatmap(image, label, "Grad-CAM")),
        args.repeats,
    )

    batch = np.stack([classifier.prepare(b) for b in raw]).astype(np.float32)
    classifier.probabilities(batch)
    classifier.model.predict(batch, batch_size=32, verbose=0)
    start = time.perf_counter()
    classifier.probabilities(batch, batch_size=32)
    ours = len(batch) / (time.perf_counter() - start)
    start = time.perf_counter()
    classifier.model.predict(batch, batch_size=32, verbose=0)
    bare = len(batch) / (time.perf_counter() - start)

    print("=== bench/inference_bench.py ===")
    print(f"machine: {machine()}")
    print(
        f"run: {run.id}, input {classifier.input_size}px; "
        f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset (on by default)')}"
    )
    print(f"one scan (decode + predict), median of {args.repeats}: {one:.0f} ms")
    print(f"one scan + Grad-CAM, median of {args.repeats}: {with_cam:.0f} ms")
    print(
        f"batch of {len(batch)}: Classifier {ours:.1f} img/s, bare model.predict {bare:.1f} img/s "
        f"({100 * ours / bare:.0f}%)"
    )
    print(
        f"resident memory with model + 3 visualisers: {rss / 2**30:.2f} GiB "
        f"(+{(rss - rss0) / 2**30:.2f} GiB for them)"
    )


if __name__ == "__main__":
    main()
