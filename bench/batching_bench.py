"""Would one model call for several sessions' scans beat one call per session?

    .venv/bin/python bench/batching_bench.py RUN_ID --models MODELS [--repeats 5]

When a class uploads at once, each session's script thread calls the shared model with its
own scan. This measures, for N scans (real Testing images, the app's Classifier with
out-of-distribution score and Grad-CAM activations, as Classify asks for them):
- N calls from N threads at once (what the server does);
- N calls one after another;
- one call with a batch of N (what batching the sessions together would do).
Each setting runs in turn within every repeat, so a busy machine slows all three alike;
the medians and their ratio to the threaded calls are printed with the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.common import DATASET, machine  # noqa: E402
from core.data.dataset import scan_dataset  # noqa: E402
from core.registry import Registry  # noqa: E402
from core.serving.inference import Classifier  # noqa: E402


def threaded(classifier: Classifier, images: np.ndarray) -> None:
    with ThreadPoolExecutor(max_workers=len(images)) as pool:
        list(pool.map(lambda image: classifier.outputs(image, activations=True), images))


def sequential(classifier: Classifier, images: np.ndarray) -> None:
    for image in images:
        classifier.outputs(image, activations=True)


def batched(classifier: Classifier, images: np.ndarray) -> None:
    classifier.outputs(images, activations=True)


def seconds(function, classifier: Classifier, images: np.ndarray) -> float:
    start = time.perf_counter()
    function(classifier, images)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--sizes", default="1,4,8,16")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print("=== bench/batching_bench.py ===")
    print("machine:", machine())
    classifier = Classifier(Registry(args.models).get(args.run))
    sizes = [int(n) for n in args.sizes.split(",")]
    testing = scan_dataset(DATASET).testing[: max(sizes)]
    images = np.stack([classifier.prepare(s.path) for s in testing])
    settings = {"threads": threaded, "one after another": sequential, "one batch": batched}
    for function in settings.values():  # warm every path and batch shape once
        for n in sizes:
            function(classifier, images[:n])
    print(f"run {args.run}, input {classifier.input_size} px, {args.repeats} repeats, median seconds")
    for n in sizes:
        times = {name: [] for name in settings}
        for _ in range(args.repeats):
            for name, function in settings.items():
                times[name].append(seconds(function, classifier, images[:n]))
        medians = {name: statistics.median(t) for name, t in times.items()}
        base = medians["threads"]
        row = "  ".join(f"{name} {m:6.2f} s ({m / base:.2f}x)" for name, m in medians.items())
        print(f"N={n:3d}  {row}  per scan in one batch: {1000 * medians['one batch'] / n:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
