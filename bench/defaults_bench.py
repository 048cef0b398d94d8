"""Benchmark: one complete run with the default configuration, from an empty cache.

    .venv/bin/python bench/defaults_bench.py      # ~25 min on a 2-core CPU

What a user gets from `python -m core train DATA` (or Start on the Train page with the
defaults) on the shared dataset with the stand-in weights: wall time, official and
clean test figures, and the time-to-accuracy curve. Prints the machine.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DATASET, OUT, machine, standin_weights  # noqa: E402
from bench.fast_bench import report, time_to_accuracy  # noqa: E402
from core.config import TrainConfig  # noqa: E402
from core.registry import Registry  # noqa: E402
from core.train import prepare_run, train_run  # noqa: E402


def main() -> None:
    print("=== bench/defaults_bench.py ===")
    print("machine:", machine())
    config = TrainConfig(data_dir=str(DATASET), weights=str(standin_weights()))
    print("config:", {k: v for k, v in config.to_dict().items() if k not in ("data_dir", "weights")})
    root = OUT / "defaults"
    shutil.rmtree(root, ignore_errors=True)  # an empty registry and an empty cache
    registry = Registry(root)
    start = time.monotonic()
    run = prepare_run(registry, config, "defaults")
    train_run(registry, run, verbose=2)
    report("defaults, empty cache", run, time.monotonic() - start)
    time_to_accuracy(run)


if __name__ == "__main__":
    main()
