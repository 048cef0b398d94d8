"""Benchmark: the real training pipeline on the shared dataset with the stand-in weights.

    .venv/bin/python bench/train_bench.py [--head-epochs 2 --finetune-epochs 2 ...]

Trains one run into the registry (models/ by default), then prints the wall time of
each phase, training images/s, Testing accuracy, macro F1, the confusion matrix and the
machine. Accuracy figures are for the stand-in weights, not ImageNet's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))

from bench.common import DATASET, machine, print_metrics, standin_weights  # noqa: E402
from core.config import TrainConfig  # noqa: E402
from core.registry import Registry  # noqa: E402
from core.training.train import prepare_run, train_run  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DATASET))
    p.add_argument("--models", default=None, help="registry folder (default: models/)")
    p.add_argument("--input-size", type=int, default=299)
    p.add_argument("--head-epochs", type=int, default=2)
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument("--unfreeze-from", default="mixed8")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-per-class", type=int, default=None)
    p.add_argument("--run-id", default=None)
    args = p.parse_args()

    registry = Registry(args.models) if args.models else Registry()
    config = TrainConfig(
        data_dir=args.data,
        weights=str(standin_weights()),
        input_size=args.input_size,
        head_epochs=args.head_epochs,
        finetune_epochs=args.finetune_epochs,
        unfreeze_from=args.unfreeze_from,
        batch_size=args.batch_size,
        max_per_class=args.max_per_class,
        patience=2,
    )
    start = time.monotonic()
    run = prepare_run(registry, config, args.run_id or registry.new_run_id("bench-standin"))
    train_run(registry, run, verbose=2)
    wall = time.monotonic() - start

    meta, metrics, data = run.read("meta.json"), run.metrics, run.read("data.json")
    print("\n=== bench/train_bench.py ===")
    print(f"machine: {machine()}")
    print(f"run: {run.id} ({run.state}); registry {registry.root}")
    print(f"config: {json.dumps(config.to_dict())}")
    print(f"images: {json.dumps(data['counts'])}")
    print(f"wall time: {wall:.0f} s; phases: {json.dumps(meta['timings'])}")
    for record in run.history:
        print(
            f"  epoch {record['epoch']} ({record['phase']}): {record['seconds']:.0f} s, "
            f"val_acc {record.get('val_accuracy', float('nan')):.4f}"
        )
    print(f"training images/s (last epoch of each phase): {json.dumps(meta['train_images_per_s'])}")
    print_metrics(metrics)


if __name__ == "__main__":
    main()
