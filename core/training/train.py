"""Training a run: `prepare_run` creates it with its resolved config, `train_run` trains
it (the command line and the app both call these two).

Training fits the phases of core.training.phases on batches from a feed (core.training.feeds), under the
run's lifecycle (core.training.lifecycle: the lock, the status, stop requests), recording
progress, history and the checkpoint as it goes (core.training.recorder). Each phase minimises
categorical cross-entropy. The weights to keep (config.keep: those of the last epoch,
or of the lowest validation loss over both phases, with early stopping) are
checkpointed atomically as training goes and become the run's model, which is then
evaluated on Testing and given its out-of-distribution check.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from core.config import TrainConfig
from core.data.dataset import DatasetIndex, Sample, fingerprint, scan_dataset
from core.data.pipeline import SkippedFiles
from core.data.split import run_split
from core.errors import PipelineError
from core.evaluation.evaluate import evaluate_run
from core.model.network import build_model, load_model, set_precision, set_trainable
from core.registry import Registry, Run
from core.resolve import resolve_config
from core.training.cache import ActivationCache
from core.training.distribute import (
    check_replicas,
    describe,
    is_multi_worker,
    machine_precision,
    make_strategy,
)
from core.training.feeds import CachedFeed, Feed, ImageFeed
from core.training.lifecycle import StopFlag, StopRequested, check_disk_space, run_locked
from core.training.loop import fit_distributed, use_synchronized_batchnorm
from core.training.ood_fit import fit_run
from core.training.phases import Phase, plan_phases
from core.training.recorder import RunRecorder, Timings, write_stage

warnings.filterwarnings("ignore", message="`shuffle=True` was passed")


def prepare_run(registry: Registry, config: TrainConfig, run_id: str | None = None) -> Run:
    """Create the run folder with its configuration; training itself comes after."""
    config.validate()
    config = resolve_config(config, machine_precision())
    run = registry.create(run_id or registry.new_run_id(config.unfreeze_from))
    run.write("config.json", config.to_dict())
    return run


def train_run(
    registry: Registry,
    run: Run,
    verbose: int = 1,
    stop: StopFlag | None = None,
    cache_root: Path | None = None,
) -> Run:
    """Train a prepared run under the machine-wide lock; always leaves a final status."""
    stop = stop or StopFlag()
    run_locked(registry, run, stop, lambda: _train(run, stop, verbose, cache_root))
    return run


@dataclass
class Data:
    """The dataset, and the run's split of its Training images."""

    index: DatasetIndex
    train: list[Sample]
    validation: list[Sample]


@dataclass
class Fitting:
    """Everything the phases fit with, and what meta.json records about it."""

    run: Run
    config: TrainConfig
    phases: list[Phase]
    data: Data
    strategy: tf.distribute.Strategy
    model: keras.Model
    feed: Feed
    recorder: RunRecorder
    control: StopFlag  # the stop the phases watch (across machines: the workers' agreement)
    skipped: SkippedFiles
    timings: Timings

    def write_meta(self) -> None:
        meta = self.recorder.meta(
            self.timings,
            n_train=len(self.data.train),
            feed=self.feed.describe(),
            devices=describe(self.strategy),
            precision=self.config.precision,
            skipped=self.skipped.as_dict(),
        )
        self.run.write("meta.json", meta)


def _train(run: Run, stop: StopFlag, verbose: int, cache_root: Path | None) -> None:
    """Five steps: split the data, build the model on its devices, open the feed (in
    cached mode, computing the activations), fit the phases, then keep, evaluate and
    check the kept model."""
    config = _settled_config(run)
    phases = plan_phases(config)
    timings = Timings()
    cache_root = cache_root or run.cache_dir
    with timings.measure("scan_s"):
        data = _split_data(run, config, cache_root)
    strategy, model = _build_model(config, data, stop)
    fitting = _open_feed(run, config, phases, data, strategy, model, stop, timings, cache_root)
    _fit_phases(fitting, stop, verbose)
    _keep_and_evaluate(fitting, verbose)


def _settled_config(run: Run) -> TrainConfig:
    """The run's config resolved again, and written back: a config.json written by hand
    may say "auto" or name no size, and whatever reads the run later (inference,
    reports) needs the numbers."""
    config = resolve_config(TrainConfig.from_dict(run.config).validate(), machine_precision())
    run.write("config.json", config.to_dict())
    return config


def _split_data(run: Run, config: TrainConfig, cache_root: Path) -> Data:
    """Scan the dataset and split Training into training and validation images;
    classes.json and data.json (the fingerprint) record the outcome."""
    index = scan_dataset(config.data_dir)
    write_stage(run, "auditing")  # the validation split keeps each copy group on one side
    split = run_split(index, config, cache_root)
    run.write("classes.json", index.classes)
    data = fingerprint(index, {"train": split.train, "validation": split.validation, "test": index.testing})
    run.write(
        "data.json", {**data, "dropped_duplicates": split.dropped_duplicates, "split": split.describe()}
    )
    return Data(index, split.train, split.validation)


def _build_model(
    config: TrainConfig, data: Data, stop: StopFlag
) -> tuple[tf.distribute.Strategy, keras.Model]:
    """The strategy of config.strategy, and the model built in its scope (variables and
    optimizer slots mirrored on each replica)."""
    keras.utils.set_random_seed(config.seed)
    strategy = make_strategy(config.strategy)
    check_replicas(strategy, config.batch_size, len(data.validation))
    multi_worker = is_multi_worker(strategy)
    if multi_worker:
        stop.reclaim_signals()
    with strategy.scope():
        model = build_model(len(data.index.classes), config.input_size, config.weights, config.dropout)
    if multi_worker and config.train_batchnorm:
        use_synchronized_batchnorm(model)
    return strategy, model


def _open_feed(
    run: Run,
    config: TrainConfig,
    phases: list[Phase],
    data: Data,
    strategy: tf.distribute.Strategy,
    model: keras.Model,
    stop: StopFlag,
    timings: Timings,
    cache_root: Path,
) -> Fitting:
    """The recorder and the feed, once the disk is known to hold what the run writes; in
    cached mode the activations are computed here (cache_s)."""
    multi_worker = is_multi_worker(strategy)
    # Across machines, a stop takes effect when all workers have agreed on it (see
    # core.training.loop); the recorder and the phase loop watch that agreement, not the signal.
    control = StopFlag() if multi_worker else stop
    n_other = len(data.validation) + len(data.index.testing)
    # Opened once: opening hashes the weights file.
    cache = ActivationCache(cache_root, config) if config.mode == "cached" else None
    check_disk_space(run, cache, config, model, len(data.train), n_other)
    skipped = SkippedFiles()
    recorder = RunRecorder(run, phases, model, control, config.keep)
    n = len(data.index.classes)
    feed: Feed
    if cache is not None:
        with timings.measure("cache_s"):
            feed = CachedFeed(cache, config, model, data.train, data.validation, n, skipped, recorder)
    else:
        replicas = 1 if multi_worker else strategy.num_replicas_in_sync
        feed = ImageFeed(config, data.train, data.validation, n, skipped, replicas)
    return Fitting(run, config, phases, data, strategy, model, feed, recorder, control, skipped, timings)


def _fit_phases(f: Fitting, stop: StopFlag, verbose: int) -> None:
    """Each phase in turn: unfreeze its blocks, compile, fit; meta.json after each."""
    for i, phase in enumerate(f.phases):
        if f.control.requested:
            break
        trainable, train_ds, val_ds, batches = f.feed.for_phase(f.model, phase)
        f.recorder.start_phase(i, batches)
        set_trainable(f.model, phase.unfreeze_from, f.config.train_batchnorm)
        set_precision(f.model, phase.unfreeze_from, f.config.precision)
        with f.strategy.scope():
            trainable.compile(
                optimizer=phase.optimizer(batches),
                loss=keras.losses.CategoricalCrossentropy(label_smoothing=f.config.label_smoothing),
                metrics=["accuracy"],
            )
        callbacks: list[keras.callbacks.Callback] = [f.recorder]
        if f.config.keep == "best":
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss", patience=f.config.patience, restore_best_weights=True
                )
            )
        try:
            with f.timings.measure(f"{phase.name}_s"):
                if is_multi_worker(f.strategy):
                    train_fn, val_fn = f.feed.input_functions()
                    fit_distributed(
                        trainable, f.strategy, train_fn, val_fn, phase.epochs, callbacks, stop, f.control
                    )
                else:
                    trainable.fit(
                        train_ds,
                        validation_data=val_ds,
                        epochs=phase.epochs,
                        callbacks=callbacks,
                        verbose=verbose,
                    )
        finally:
            f.write_meta()
        if f.control.requested:
            raise StopRequested


def _keep_and_evaluate(f: Fitting, verbose: int) -> None:
    """The kept epoch's weights (the last, or the best over both phases) become the run's
    model, which is evaluated on Testing and given its out-of-distribution check."""
    run, index = f.run, f.data.index
    if not run.file("checkpoint.keras").is_file():
        raise PipelineError("no epoch reached a finite validation loss; there is no model to keep")
    os.replace(run.file("checkpoint.keras"), run.model_path)
    with f.timings.measure("evaluate_s"):
        f.recorder.write_progress("evaluating", force=True)
        kept = load_model(run.model_path)
        evaluate_run(run, index, kept, verbose=verbose, validation=f.feed.validation_predictions(kept, index))
    with f.timings.measure("ood_s"):
        # The kept model's features of these same images. A failure leaves a trained run
        # without the check (the app says so, and how to fit it).
        try:
            fit_run(run, index, kept, f.data.train, f.data.validation, features=f.feed.pooled_features)
        except (PipelineError, ValueError, np.linalg.LinAlgError) as exc:
            print(f"out-of-distribution check not fitted: {exc}", file=sys.stderr)
    f.timings.finish()
    f.write_meta()
    f.recorder.write_progress("done", force=True)
