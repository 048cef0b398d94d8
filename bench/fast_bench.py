"""Benchmark: the cached (fast CPU) training mode against end to end, in one invocation.

    .venv/bin/python bench/fast_bench.py                       # full measurement (~1 h here)
    .venv/bin/python bench/fast_bench.py --skip-full --compare-per-class 40   # quick look

1. A complete cached run from an empty cache on the shared dataset with the stand-in
   weights: wall time, Testing accuracy and macro F1, and its time-to-accuracy curve.
2. A second run that reuses that cache (another learning rate, another unfreeze point
   above the boundary): wall time and accuracy.
3. Seconds per epoch of each mode on the same subset of the data, and their ratio.
Prints the machine. Figures are for the stand-in weights, not ImageNet's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DATASET, OUT, machine, print_metrics, standin_weights  # noqa: E402
from core.config import TrainConfig  # noqa: E402
from core.registry import Registry  # noqa: E402
from core.training.train import prepare_run, train_run  # noqa: E402


def train_once(registry: Registry, config: TrainConfig, run_id: str, cache: Path):
    start = time.monotonic()
    run = prepare_run(registry, config, run_id)
    train_run(registry, run, verbose=2, cache_root=cache)
    return run, time.monotonic() - start


def report(label: str, run, wall: float) -> None:
    meta, metrics = run.read("meta.json"), run.metrics
    print(f"\n--- {label}: run {run.id} ({run.state}) ---")
    print(f"wall {wall:.0f} s ({wall / 60:.1f} min); phases {json.dumps(meta['timings'])}")
    print(f"feed {json.dumps(meta['feed'])}")
    if metrics:
        print_metrics(metrics)


def time_to_accuracy(run) -> None:
    meta = run.read("meta.json")
    elapsed = meta["timings"].get("scan_s", 0) + meta["timings"].get("cache_s", 0)
    print("time-to-accuracy (cumulative minutes -> validation accuracy):")
    for record in run.history:
        elapsed += record["seconds"]
        print(
            f"  {elapsed / 60:6.1f} min  epoch {record['epoch']:2d} ({record['phase']:8s}) "
            f"val_acc {record.get('val_accuracy', float('nan')):.4f}"
        )


def per_epoch(history: list[dict]) -> dict[str, float]:
    phases: dict[str, list[float]] = {}
    for record in history:
        phases.setdefault(record["phase"], []).append(record["seconds"])
    return {phase: sum(s) / len(s) for phase, s in phases.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DATASET))
    p.add_argument("--input-size", type=int, default=299)
    p.add_argument("--unfreeze-from", default="mixed8")
    p.add_argument("--head-epochs", type=int, default=6)
    p.add_argument("--finetune-epochs", type=int, default=4)
    p.add_argument("--views", type=int, default=2)
    p.add_argument(
        "--compare-per-class",
        type=int,
        default=50,
        help="images per class for the seconds-per-epoch comparison",
    )
    p.add_argument("--skip-full", action="store_true", help="only the per-epoch comparison")
    args = p.parse_args()

    stamp = time.strftime("%Y%m%d-%H%M%S")
    registry = Registry(OUT / "models")
    cache = OUT / f"cache-{stamp}"  # empty: the first run pays for the cache
    base = TrainConfig(
        data_dir=args.data,
        weights=str(standin_weights()),
        input_size=args.input_size,
        unfreeze_from=args.unfreeze_from,
        head_epochs=args.head_epochs,
        finetune_epochs=args.finetune_epochs,
        cache_views=args.views,
        patience=3,
    )
    print(f"=== bench/fast_bench.py ===\nmachine: {machine()}")
    print(f"config: {json.dumps(base.to_dict())}")

    if not args.skip_full:
        first, wall = train_once(registry, base, f"fast-{stamp}-first", cache)
        report("1. cached, empty cache", first, wall)
        time_to_accuracy(first)
        second_config = replace(
            base,
            finetune_lr=base.finetune_lr / 2,
            unfreeze_from=f"mixed{int(args.unfreeze_from[5:]) + 1}",
            cache_boundary=base.boundary(),
        )
        second, wall = train_once(registry, second_config, f"fast-{stamp}-reuse", cache)
        report("2. cached, reusing the cache (half the fine-tuning rate, one block less)", second, wall)

    small = replace(base, max_per_class=args.compare_per_class, head_epochs=1, finetune_epochs=1)
    compare_cache = OUT / f"cache-{stamp}-compare"
    cached, _ = train_once(registry, small, f"fast-{stamp}-cmp-cached", compare_cache)
    e2e, _ = train_once(registry, replace(small, mode="end_to_end"), f"fast-{stamp}-cmp-e2e", compare_cache)
    fast, slow = per_epoch(cached.history), per_epoch(e2e.history)
    n_train = sum(cached.read("data.json")["counts"]["train"].values())
    print(f"\n--- 3. seconds per epoch on the same {n_train} training images ---")
    for phase in slow:
        print(
            f"  {phase:8s} end_to_end {slow[phase]:7.1f} s   cached {fast[phase]:7.1f} s   "
            f"ratio {slow[phase] / fast[phase]:5.1f}x"
        )
    print(f"  cached mode's one-off cache build: {cached.read('meta.json')['timings']['cache_s']:.0f} s")
    shutil.rmtree(compare_cache, ignore_errors=True)


if __name__ == "__main__":
    main()
