"""Benchmark (experiment): the defaults' fine-tuning on an existing activation cache, with
snapshots, scored on Testing.

    .venv/bin/python bench/snapshot_bench.py --models REGISTRY --seed 1            # ~25 min
    .venv/bin/python bench/snapshot_bench.py --models REGISTRY --seed 1 --shift 1  # a variant

It trains the head and fine-tuning phases as `python -m core train` does with the
defaults (same cache, same seed: the same weights, so a variant compares against the
plain run image for image), saves the model every half fine-tuning epoch, and scores
every snapshot, and averages of the last snapshots' probabilities, on the official and
clean Testing sets. Testing runs through the cached blocks once (its boundary
activations go into the same cache) and each snapshot through the upper blocks only.
Variants, each off by default: a random shift of the boundary activations by up to
`--shift` cells (a convolutional network's activations of a shifted image, up to the
borders), a linear warm-up over a fraction of the fine-tuning steps, and a cosine
schedule restarted every epoch (`--schedule cyclic`, snapshot ensembles). Nothing is
added to the registry. Prints the figures and the machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.common import DATASET, OUT, machine, standin_weights  # noqa: E402
from core.config import TrainConfig  # noqa: E402
from core.data.audit import cached_audit  # noqa: E402
from core.data.dataset import scan_dataset  # noqa: E402
from core.data.pipeline import SkippedFiles  # noqa: E402
from core.data.split import run_split  # noqa: E402
from core.model.network import build_model, set_precision, set_trainable  # noqa: E402
from core.resolve import resolve_config  # noqa: E402
from core.training.cache import ActivationCache  # noqa: E402
from core.training.distribute import machine_precision  # noqa: E402
from core.training.feeds import CachedFeed  # noqa: E402
from core.training.phases import Phase, plan_phases  # noqa: E402


class Silent:
    """Stands in for the run's recorder: CachedFeed reports caching progress to it, and
    here nobody watches."""

    def write_progress(self, *args, **kwargs) -> None:
        pass

    def caching(self, done: int, total: int) -> None:
        pass


class Snapshots(keras.callbacks.Callback):
    def __init__(self, model: keras.Model, every: int, folder: Path) -> None:
        super().__init__()
        self.full, self.every, self.folder, self.step = model, every, folder, 0

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self.step += 1
        if self.step % self.every == 0:
            self.full.save_weights(self.folder / f"step{self.step:05d}.weights.h5")


def optimizer(phase: Phase, batches: int, args) -> keras.optimizers.Optimizer:
    if phase.name != "finetune" or (args.schedule == "cosine" and not args.warmup):
        return phase.optimizer(batches)
    if args.schedule == "cyclic":
        return keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecayRestarts(phase.learning_rate, batches)
        )
    total = phase.epochs * batches
    warm = round(args.warmup * total)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, total - warm, warmup_target=phase.learning_rate, warmup_steps=warm
    )
    return keras.optimizers.Adam(schedule)


def shifted(data: tf.data.Dataset, cells: int) -> tf.data.Dataset:
    """Each activation map moved by up to `cells` in each direction, edges repeated."""

    def shift(x, y):
        side, channels = x.shape[1], x.shape[-1]
        x = tf.pad(x, [[0, 0], [cells, cells], [cells, cells], [0, 0]], mode="SYMMETRIC")
        return tf.map_fn(lambda a: tf.image.random_crop(a, [side, side, channels]), x), y

    return data.map(shift, num_parallel_calls=tf.data.AUTOTUNE)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=Path, default=OUT / "models", help="registry whose .cache to use")
    parser.add_argument("--data", type=Path, default=DATASET)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--shift", type=int, default=0, help="random shift of the activations, in cells")
    parser.add_argument("--warmup", type=float, default=0.0, help="warm-up, a fraction of fine-tuning")
    parser.add_argument("--schedule", choices=["cosine", "cyclic"], default="cosine")
    parser.add_argument("--out", type=Path, default=OUT / "snapshots")
    args = parser.parse_args()
    if args.warmup and args.schedule == "cyclic":
        parser.error("--warmup applies to the cosine schedule, not to --schedule cyclic")
    print("=== bench/snapshot_bench.py ===")
    print("machine:", machine())
    print(f"seed {args.seed}, shift {args.shift}, warm-up {args.warmup}, schedule {args.schedule}")
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("step*.weights.h5"):
        old.unlink()

    config = resolve_config(
        TrainConfig(str(args.data), weights=str(standin_weights()), seed=args.seed).validate(),
        machine_precision(),
    )
    index = scan_dataset(config.data_dir)
    split = run_split(index, config, args.models / ".cache")
    train, val = split.train, split.validation
    keras.utils.set_random_seed(config.seed)
    model = build_model(len(index.classes), config.input_size, config.weights, config.dropout)
    cache = ActivationCache(args.models / ".cache", config)
    start = time.monotonic()
    feed = CachedFeed(cache, config, model, train, val, len(index.classes), SkippedFiles(), Silent())
    print(f"cache: {time.monotonic() - start:.0f} s")

    for phase in plan_phases(config):
        trainable, train_data, val_data, batches = feed.for_phase(model, phase)
        set_trainable(model, phase.unfreeze_from, config.train_batchnorm)
        set_precision(model, phase.unfreeze_from, config.precision)  # as train does
        trainable.compile(
            optimizer=optimizer(phase, batches, args), loss="categorical_crossentropy", metrics=["accuracy"]
        )
        callbacks = []
        if phase.name == "finetune":
            callbacks = [Snapshots(model, max(1, batches // 2), args.out)]
            train_data = shifted(train_data, args.shift) if args.shift else train_data
        start = time.monotonic()
        trainable.fit(
            train_data, validation_data=val_data, epochs=phase.epochs, callbacks=callbacks, verbose=2
        )
        print(f"{phase.name}: {time.monotonic() - start:.0f} s")
    # Scored in float32, as a saved model computes: the upper blocks and the cut's cache.
    set_precision(model, config.unfreeze_from, "float32")
    cache = ActivationCache(args.models / ".cache", replace(config, precision="float32"))

    start = time.monotonic()
    digests = cache.build(model, index.testing, 1, SkippedFiles())
    tests = [s for s in index.testing if s in digests]
    y = np.array([s.label for s in tests])
    clean_files = set(cached_audit(index, args.models / ".cache").clean_test_files())
    clean = np.array([index.relative(s) in clean_files for s in tests])
    data = cache.dataset(tests, digests, len(index.classes), config.batch_size, 1)
    probabilities = {}
    for path in sorted(args.out.glob("step*.weights.h5")):
        model.load_weights(path)
        probabilities[path.name.split(".")[0]] = np.asarray(
            feed.boundary_model.predict(data, verbose=0), dtype=np.float64
        )
    print(f"Testing through the cut and {len(probabilities)} snapshots: {time.monotonic() - start:.0f} s")

    def score(name: str, p: np.ndarray) -> None:
        wrong = p.argmax(1) != y
        official, on_clean = 1 - wrong.mean(), 1 - wrong[clean].mean()
        print(f"  {name:22s} Testing {official:.4f} ({wrong.sum():3d} errors)  clean {on_clean:.4f}")

    for name, p in probabilities.items():
        score(name, p)
    names = list(probabilities)
    for n in range(2, len(names) + 1):
        score(f"mean of the last {n}", np.mean([probabilities[k] for k in names[-n:]], axis=0))


if __name__ == "__main__":
    main()
