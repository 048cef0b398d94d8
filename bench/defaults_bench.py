"""Benchmark: a complete run with the default configuration from an empty cache, then a
second run that reuses the cache.

    .venv/bin/python bench/defaults_bench.py                 # about half an hour on 2 cores
    .venv/bin/python bench/defaults_bench.py --second-only   # the second run again

Run 1 is what a user gets from `python -m core train DATA` (or Start on the Train page
with the defaults) on the shared dataset with the stand-in weights. Run 2 is a user's
next experiment on the same data: another unfreeze point above the first run's boundary
and another learning rate; its cache is derived from run 1's (no image is decoded
again). Prints wall time, official and clean test figures, the time-to-accuracy curve of
each, and the machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DATASET, OUT, machine, standin_weights  # noqa: E402
from bench.fast_bench import report, time_to_accuracy  # noqa: E402
from core.config import TrainConfig  # noqa: E402
from core.registry import Registry  # noqa: E402
from core.training.cache import ActivationCache  # noqa: E402
from core.training.train import prepare_run, train_run  # noqa: E402

# Run 2: fine-tune only mixed8-mixed10, at half the default rate, for two epochs: a
# user's typical second experiment, cheap because its cache derives from run 1's
# (docs/benchmarks.md has its time on each machine).
SECOND = {"unfreeze_from": "mixed8", "finetune_lr": 2e-4, "finetune_epochs": 2}


def timed_run(registry: Registry, config: TrainConfig, run_id: str, label: str) -> None:
    start = time.monotonic()
    run = prepare_run(registry, config, run_id)
    # As the run records it: what "auto" and the default input size stood for here.
    print("config:", {k: v for k, v in run.config.items() if k not in ("data_dir", "weights")})
    train_run(registry, run, verbose=2)
    report(label, run, time.monotonic() - start)
    time_to_accuracy(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--second-only", action="store_true", help="keep run 1 and its cache; redo run 2")
    args = parser.parse_args()
    print("=== bench/defaults_bench.py ===")
    print("machine:", machine())
    config = TrainConfig(data_dir=str(DATASET), weights=str(standin_weights()))
    root = OUT / "defaults"
    if not args.second_only:
        shutil.rmtree(root, ignore_errors=True)  # an empty registry and an empty cache
    registry = Registry(root)
    if not args.second_only:
        timed_run(registry, config, "defaults", "run 1: defaults, empty cache")
    second = replace(config, **SECOND)
    shutil.rmtree(root / "second", ignore_errors=True)
    # Run 2's own cache is derived afresh each time, as for a user's first second run.
    for folder in ActivationCache(registry.cache_dir, second).folders_at(second.boundary()):
        shutil.rmtree(folder, ignore_errors=True)
    timed_run(registry, second, "second", "run 2: reuses run 1's cache")


if __name__ == "__main__":
    main()
