"""Benchmark: where a cached fine-tuning epoch's time goes, part by part, in one process.

    .venv/bin/python bench/epoch_bench.py                # ~7 min on a 2-core CPU
    .venv/bin/python bench/epoch_bench.py --rounds 2     # shorter

A real fine-tuning epoch (the `seconds` of a run's history.json) has taken longer than
its steps alone (bench/step_bench.py) on some machines. This times, with the default
configuration on the shared dataset and the stand-in weights, `--steps` fine-tuning
steps each way, in `--rounds` interleaved rounds, and scales each to a whole epoch:

- the input pipeline alone (reading cached activations, no training);
- train_on_batch on one batch held in memory (what bench/step_bench.py times);
- fit() on that batch (the arithmetic, through fit);
- fit() on the cached activations (what a run does, without its callbacks);
- the same with the run's callbacks (RunRecorder: progress files);
- validation (evaluate on the cached validation activations) and one checkpoint save.

It reuses the activation cache of bench/defaults_bench.py's registry (or --models), and
builds what is missing first (about 6 min). Prints the machine and the CPU time the
host took from this VM meanwhile (steal), which slows everything alike.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.common import DATASET, OUT, machine, standin_weights  # noqa: E402
from core.config import PRECISIONS, TrainConfig  # noqa: E402
from core.data.dataset import scan_dataset  # noqa: E402
from core.data.pipeline import SkippedFiles  # noqa: E402
from core.data.split import run_split  # noqa: E402
from core.model.network import build_model, save_model, set_precision, set_trainable  # noqa: E402
from core.registry import Registry  # noqa: E402
from core.resolve import resolve_config  # noqa: E402
from core.training.cache import ActivationCache  # noqa: E402
from core.training.distribute import machine_precision  # noqa: E402
from core.training.lifecycle import StopFlag  # noqa: E402
from core.training.phases import plan_phases  # noqa: E402
from core.training.recorder import RunRecorder  # noqa: E402


def steal_s() -> float:
    """Seconds of CPU the hypervisor gave to others since boot (all cores together)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def timed(label: str, action: Callable[[], object], per_epoch: float) -> float:
    """Run `action`, print its seconds and, scaled by `per_epoch`, an epoch's worth."""
    steal, start = steal_s(), time.monotonic()
    action()
    seconds = time.monotonic() - start
    print(
        f"  {label:48s} {seconds:6.1f} s  -> {seconds * per_epoch:6.0f} s an epoch"
        f"  (steal {steal_s() - steal:.1f} s)",
        flush=True,
    )
    return seconds * per_epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--models", type=Path, default=OUT / "defaults", help="registry whose cache to use")
    parser.add_argument("--steps", type=int, default=10, help="fine-tuning steps a round, each way")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of the four ways of fitting")
    parser.add_argument("--precision", choices=PRECISIONS, default=TrainConfig("").precision)
    args = parser.parse_args()
    print("=== bench/epoch_bench.py ===")
    print("machine:", machine())
    config = resolve_config(
        TrainConfig(str(DATASET), str(standin_weights()), precision=args.precision).validate(),
        machine_precision(),
    )
    index = scan_dataset(config.data_dir)
    registry = Registry(args.models)
    split = run_split(index, config, registry.cache_dir)
    train, val = split.train, split.validation
    n = len(index.classes)
    cache = ActivationCache(registry.cache_dir, config)
    model = build_model(n, config.input_size, config.weights, config.dropout)
    skipped = SkippedFiles()
    start = time.monotonic()
    digests = cache.build(model, train, config.cache_views, skipped)
    digests.update(cache.build(model, val, 1, skipped))
    print(f"cache ready in {time.monotonic() - start:.0f} s: {cache.plain_folder}")

    batches = math.ceil(len(train) / config.batch_size)
    scale = batches / args.steps
    phase = plan_phases(config)[-1]
    upper = keras.Model(model.get_layer(config.boundary()).output, model.output)
    set_trainable(model, phase.unfreeze_from, config.train_batchnorm)
    set_precision(model, phase.unfreeze_from, config.precision)  # as training sets it
    upper.compile(optimizer=phase.optimizer(batches), loss="categorical_crossentropy", metrics=["accuracy"])

    def feed() -> tf.data.Dataset:
        return cache.dataset(train, digests, n, config.batch_size, config.cache_views, config.seed)

    x, y = next(iter(feed()))
    one_batch = tf.data.Dataset.from_tensors((x, y)).repeat()
    val_ds = cache.dataset(val, digests, n, config.batch_size, 1)

    def fit(data: tf.data.Dataset, callbacks: list | None = None) -> None:
        upper.fit(data.repeat(), steps_per_epoch=args.steps, epochs=1, callbacks=callbacks, verbose=0)

    print(
        f"{len(train):,} training images, {batches} steps an epoch in {config.precision} at "
        f"{config.input_size} px; {args.rounds} rounds of {args.steps} steps each way, interleaved"
    )
    timed("input pipeline alone", lambda: sum(1 for _ in feed().repeat().take(args.steps)), scale)
    with tempfile.TemporaryDirectory() as scratch:
        run = Registry(Path(scratch)).create("epoch-bench")
        recorder = RunRecorder(run, plan_phases(config), model, StopFlag())
        recorder.start_phase(len(recorder.phases) - 1, batches)
        ways = {
            "train_on_batch, one batch in memory": lambda: [
                upper.train_on_batch(x, y) for _ in range(args.steps)
            ],
            "fit, one batch in memory": lambda: fit(one_batch),
            "fit, cached activations": lambda: fit(feed()),
            "fit, cached activations, RunRecorder": lambda: fit(feed(), [recorder]),
        }
        for way, action in ways.items():  # each traces its function once: not part of an epoch
            timed(f"warm-up: {way}", action, 1)
        # The host's speed drifts by 20% over minutes here: interleaving the ways and
        # taking medians compares them at the same moments.
        epochs: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(args.rounds):
            for way, action in ways.items():
                epochs[way].append(timed(way, action, scale))
        validation = timed(f"validation ({len(val)} images)", lambda: upper.evaluate(val_ds, verbose=0), 1)
        checkpoint = timed("checkpoint save (whole model)", lambda: save_model(model, run.file("c.keras")), 1)
    print("medians, scaled to an epoch:")
    for way, values in epochs.items():
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"  {way:48s} {statistics.median(values):6.0f} s  (rounds: {rounds})")
    print(f"  validation {validation:.0f} s; checkpoint {checkpoint:.0f} s at each improving epoch")


if __name__ == "__main__":
    main()
