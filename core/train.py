"""Fine-tuning in two phases, written into a registry run as it goes.

Phase "head" trains the pooling + dense head on a frozen backbone; phase "finetune"
unfreezes the backbone from a chosen block with a lower learning rate. Each phase uses
Adam and categorical cross-entropy. The weights to keep (config.keep: those of the last
epoch, or of the lowest validation loss over both phases, with early stopping) are
checkpointed atomically as training goes and become the run's model. SIGTERM or SIGINT
stops training at the next batch: the run is marked "stopped" and keeps its checkpoint.
"""

from __future__ import annotations

import math
import os
import platform
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from core.augment import build_augmenter
from core.cache import ActivationCache
from core.config import TrainConfig
from core.dataset import DatasetIndex, fingerprint, scan_dataset
from core.distribute import describe, is_multi_worker, make_strategy, resolve_config
from core.errors import ConfigError, PipelineError, TrainingBusyError
from core.evaluate import Predictions, evaluate_run
from core.loop import InputFunction, fit_distributed, use_synchronized_batchnorm
from core.model import build_model, load_model, save_model, set_precision, set_trainable
from core.ood_fit import fit_run
from core.pipeline import SkippedFiles, make_dataset
from core.registry import Registry, Run, now_iso, require_free_space
from core.split import run_split


@dataclass
class Phase:
    name: str
    unfreeze_from: str
    epochs: int
    learning_rate: float
    schedule: str = "constant"

    def optimizer(self, batches: int) -> keras.optimizers.Optimizer:
        rate = self.learning_rate
        if self.schedule == "cosine":
            rate = keras.optimizers.schedules.CosineDecay(rate, decay_steps=self.epochs * batches)
        return keras.optimizers.Adam(rate)


def plan_phases(config: TrainConfig) -> list[Phase]:
    phases = [Phase("head", "none", config.head_epochs, config.head_lr)]
    if config.unfreeze_from != "none":
        epochs, rate, schedule = config.finetune_epochs, config.finetune_lr, config.finetune_schedule
        phases.append(Phase("finetune", config.unfreeze_from, epochs, rate, schedule))
    phases = [p for p in phases if p.epochs > 0]
    if not phases:
        raise ConfigError("nothing to train: every phase has 0 epochs")
    return phases


warnings.filterwarnings("ignore", message="`shuffle=True` was passed")


class StopRequested(Exception):
    """Raised inside fit() when a stop was asked for, to leave at once."""


class StopFlag:
    """Set by SIGTERM/SIGINT (the app's Stop button, Ctrl-C) or directly by tests."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._handles_signals = False

    def install_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self._event.set())
            self._handles_signals = True

    def reclaim_signals(self) -> None:
        """Install the handlers again if they were: MultiWorkerMirroredStrategy's
        coordination service takes SIGTERM over in native code (as a preemption
        notice), and a Stop would then never reach this flag."""
        if self._handles_signals:
            self.install_signal_handlers()

    def set(self) -> None:
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()


class RunRecorder(keras.callbacks.Callback):
    """Writes progress.json (throttled), history.json, and the checkpoint: the latest
    epoch's weights (`keep` "last") or those of the lowest validation loss ("best").

    The app follows a run only through these files, so they are always whole
    (atomic writes) and machine-readable.
    """

    def __init__(
        self, run: Run, phases: list[Phase], full_model: keras.Model, stop: StopFlag, keep: str = "best"
    ):
        super().__init__()
        self.run, self.phases, self.full_model, self.stop = run, phases, full_model, stop
        self.keep = keep
        self.batches = 0
        self._epoch = 0
        self.history: list[dict] = []
        self.best_loss = math.inf
        self.best_epoch: int | None = None
        self.kept_epoch: int | None = None  # the epoch whose weights the checkpoint holds
        self.started = time.monotonic()
        self.phase_index = 0
        self._last_write = 0.0
        self._phase_start = self.started
        self._batches_done = 0
        self._epoch_start = self.started

    # -- bookkeeping ------------------------------------------------------------------
    def start_phase(self, index: int, batches: int) -> None:
        self.phase_index = index
        self.batches = batches
        self._phase_start = time.monotonic()
        self._batches_done = 0

    def _eta(self) -> float | None:
        if self._batches_done == 0:
            return None
        per_batch = (time.monotonic() - self._phase_start) / self._batches_done
        phase = self.phases[self.phase_index]
        left = phase.epochs * self.batches - self._batches_done
        left += sum(p.epochs * self.batches for p in self.phases[self.phase_index + 1 :])
        return max(0.0, left * per_batch)

    def write_progress(
        self,
        stage: str,
        batch: int | None = None,
        logs: dict | None = None,
        force: bool = False,
        batches: int | None = None,
    ) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < 0.5:
            return
        self._last_write = now
        phase = self.phases[self.phase_index]
        self.run.write(
            "progress.json",
            {
                "stage": stage,
                "phase": phase.name,
                "phase_index": self.phase_index,
                "phases": [p.name for p in self.phases],
                "epoch": self._epoch + 1,
                "epochs": phase.epochs,
                "batch": batch,
                "batches": batches or self.batches,
                "metrics": {k: float(v) for k, v in (logs or {}).items()},
                "elapsed_s": round(now - self.started, 1),
                "eta_s": None if (eta := self._eta()) is None else round(eta, 1),
                "best_val_loss": None if math.isinf(self.best_loss) else self.best_loss,
                "updated": now_iso(),
            },
        )

    def caching(self, done: int, total: int) -> None:
        if self.stop.requested:
            raise StopRequested
        self.write_progress("caching", done, batches=total, force=done == total)

    # -- Keras hooks --------------------------------------------------------------------
    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._epoch = epoch
        self._epoch_start = time.monotonic()
        self.write_progress("training", 0, force=True)

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self._batches_done += 1
        if self.stop.requested:
            raise StopRequested
        self.write_progress("training", batch + 1, logs)

    def on_test_batch_end(self, batch: int, logs=None) -> None:
        if self.stop.requested:
            raise StopRequested
        self.write_progress("validating", self.batches, logs)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = {k: float(v) for k, v in (logs or {}).items()}
        record = {
            "phase": self.phases[self.phase_index].name,
            "phase_epoch": epoch + 1,
            "epoch": len(self.history) + 1,
            "seconds": round(time.monotonic() - self._epoch_start, 2),
            **logs,
        }
        self.history.append(record)
        self.run.write("history.json", self.history)
        val_loss = logs.get("val_loss", math.nan)
        improved = val_loss < self.best_loss  # NaN never counts as an improvement
        if improved:
            self.best_loss, self.best_epoch = val_loss, record["epoch"]
        # A diverged epoch (NaN) is never kept: "last" then keeps the latest finite one.
        if improved or (self.keep == "last" and math.isfinite(val_loss)):
            self.kept_epoch = record["epoch"]
            # The full image-to-softmax model, whichever sub-model is being fitted.
            save_model(self.full_model, self.run.file("checkpoint.keras"))
        self.write_progress("epoch_end", self.batches, logs, force=True)


def check_disk_space(
    run: Run,
    cache: ActivationCache | None,
    config: TrainConfig,
    model: keras.Model,
    n_train: int,
    n_other: int,
) -> None:
    """Refuse to start when the disk cannot hold what the run will write: two copies of
    the model while a checkpoint is saved and, in cached mode (`cache` given), the
    missing activations."""
    needed = 2 * 4 * model.count_params()
    if cache is not None:
        boundary = model.get_layer(config.boundary()).output.shape[1:]
        pooled = model.get_layer("avg_pool").output.shape[-1]
        per_view = 2 * (math.prod(boundary) + pooled)  # float16
        total = per_view * (n_train * config.cache_views + n_other)
        present = sum(f.stat().st_size for f in cache.files())
        needed += max(0, total - present)
    require_free_space(run.path, needed)


def software_versions() -> dict[str, str]:
    import PIL
    import sklearn
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "scikit-learn": sklearn.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
    }


def prepare_run(registry: Registry, config: TrainConfig, run_id: str | None = None) -> Run:
    """Create the run folder with its configuration; training itself comes after."""
    config.validate()
    config = resolve_config(config)
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
    try:
        lock = registry.training_lock(run.id)
        lock.__enter__()
    except TrainingBusyError as exc:
        run.set_status("failed", error=str(exc), ended=now_iso())
        raise
    try:
        import psutil

        run.set_status(
            "running",
            pid=os.getpid(),
            pid_started=psutil.Process().create_time(),
            started=now_iso(),
            error=None,
        )
        try:
            _train(run, stop, verbose, cache_root)
        except StopRequested:
            pass
        except BaseException as exc:
            message = str(exc) or type(exc).__name__
            run.set_status("failed", error=message, ended=now_iso())
            raise
        _finish(run, stop)
    finally:
        lock.__exit__(None, None, None)
    return run


def _finish(run: Run, stop: StopFlag) -> None:
    if run.state != "running":
        return
    if stop.requested:
        checkpoint = run.file("checkpoint.keras")
        if checkpoint.is_file():
            os.replace(checkpoint, run.model_path)
            run.set_status(
                "stopped",
                ended=now_iso(),
                error=None,
                note="stopped by request; the checkpoint is kept as model.keras",
            )
        else:
            run.set_status(
                "stopped",
                ended=now_iso(),
                error=None,
                note="stopped before the first epoch finished; no model was saved",
            )
        return
    run.set_status("completed", ended=now_iso(), error=None)


def _train(run: Run, stop: StopFlag, verbose: int, cache_root: Path | None) -> None:
    # Resolved again, and written back: a config.json written by hand may say "auto" or
    # name no size, and whatever reads the run later (inference, reports) needs the numbers.
    config = resolve_config(TrainConfig.from_dict(run.config).validate())
    run.write("config.json", config.to_dict())
    phases = plan_phases(config)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    index = scan_dataset(config.data_dir)
    cache_root = cache_root or run.cache_dir
    recorder_stage(run, "auditing")  # the validation split keeps each copy group on one side
    split = run_split(index, config, cache_root)
    train_samples, val_samples = split.train, split.validation
    run.write("classes.json", index.classes)
    data = fingerprint(index, {"train": train_samples, "validation": val_samples, "test": index.testing})
    run.write(
        "data.json", {**data, "dropped_duplicates": split.dropped_duplicates, "split": split.describe()}
    )
    timings["scan_s"] = time.monotonic() - t0

    keras.utils.set_random_seed(config.seed)
    strategy = make_strategy(config.strategy)
    multi_worker = is_multi_worker(strategy)
    if multi_worker:
        stop.reclaim_signals()
        if config.batch_size % strategy.num_replicas_in_sync:
            raise ConfigError(
                f"batch size {config.batch_size} does not split evenly over "
                f"{strategy.num_replicas_in_sync} replicas"
            )
    elif len(val_samples) < strategy.num_replicas_in_sync:
        # Every validation batch would be smaller than the replica count (see ImageFeed).
        raise ConfigError(
            f"{len(val_samples)} validation images cannot be split over "
            f"{strategy.num_replicas_in_sync} replicas: raise the validation fraction"
        )
    with strategy.scope():  # variables (and optimizer slots) mirrored on each replica
        model = build_model(len(index.classes), config.input_size, config.weights, config.dropout)
    if multi_worker and config.train_batchnorm:
        use_synchronized_batchnorm(model)
    # Across machines, a stop takes effect when all workers have agreed on it (see
    # core.loop); the recorder and the phase loop watch that agreement, not the signal.
    control = StopFlag() if multi_worker else stop
    n_other = len(val_samples) + len(index.testing)
    # Opened once: opening hashes the weights file.
    cache = ActivationCache(cache_root, config) if config.mode == "cached" else None
    check_disk_space(run, cache, config, model, len(train_samples), n_other)
    skipped = SkippedFiles()
    recorder = RunRecorder(run, phases, model, control, config.keep)
    start = time.monotonic()
    if cache is not None:
        feed: Feed = CachedFeed(
            cache,
            config,
            model,
            train_samples,
            val_samples,
            len(index.classes),
            skipped,
            recorder,
        )
        timings["cache_s"] = time.monotonic() - start
    else:
        replicas = 1 if multi_worker else strategy.num_replicas_in_sync
        feed = ImageFeed(config, train_samples, val_samples, len(index.classes), skipped, replicas)

    for i, phase in enumerate(phases):
        if control.requested:
            break
        trainable, train_ds, val_ds, batches = feed.for_phase(model, phase)
        recorder.start_phase(i, batches)
        set_trainable(model, phase.unfreeze_from, config.train_batchnorm)
        set_precision(model, phase.unfreeze_from, config.precision)
        with strategy.scope():
            trainable.compile(
                optimizer=phase.optimizer(batches),
                loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                metrics=["accuracy"],
            )
        callbacks: list[keras.callbacks.Callback] = [recorder]
        if config.keep == "best":
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss", patience=config.patience, restore_best_weights=True
                )
            )
        start = time.monotonic()
        try:
            if multi_worker:
                train_fn, val_fn = feed.input_functions()
                fit_distributed(trainable, strategy, train_fn, val_fn, phase.epochs, callbacks, stop, control)
            else:
                trainable.fit(
                    train_ds,
                    validation_data=val_ds,
                    epochs=phase.epochs,
                    callbacks=callbacks,
                    verbose=verbose,
                )
        finally:
            timings[f"{phase.name}_s"] = time.monotonic() - start
            meta = _meta(timings, len(train_samples), recorder, skipped, feed, strategy, config.precision)
            run.write("meta.json", meta)
        if control.requested:
            raise StopRequested

    # The kept epoch (the last, or the best over both phases) is the run's model.
    if not run.file("checkpoint.keras").is_file():
        raise PipelineError("no epoch reached a finite validation loss; there is no model to keep")
    os.replace(run.file("checkpoint.keras"), run.model_path)
    start = time.monotonic()
    recorder.write_progress("evaluating", force=True)
    best = load_model(run.model_path)
    evaluate_run(run, index, best, verbose=verbose, validation=feed.validation_predictions(best, index))
    timings["evaluate_s"] = time.monotonic() - start
    start = time.monotonic()
    # The out-of-distribution check: the kept model's features of these same images. A
    # failure leaves a trained run without it (the app says so, and how to fit it).
    try:
        fit_run(run, index, best, train_samples, val_samples, features=feed.pooled_features)
    except (PipelineError, ValueError, np.linalg.LinAlgError) as exc:
        print(f"out-of-distribution check not fitted: {exc}", file=sys.stderr)
    timings["ood_s"] = time.monotonic() - start
    timings["total_s"] = time.monotonic() - t0
    meta = _meta(timings, len(train_samples), recorder, skipped, feed, strategy, config.precision)
    run.write("meta.json", meta)
    recorder.write_progress("done", force=True)


def recorder_stage(run: Run, stage: str) -> None:
    """Progress before training starts (the recorder needs the model)."""
    run.write("progress.json", {"stage": stage, "updated": now_iso()})


class Feed:
    """Where a phase's batches come from; `for_phase` returns the model to fit on them."""

    def for_phase(self, model: keras.Model, phase: Phase) -> tuple[keras.Model, object, object, int]:
        raise NotImplementedError

    def describe(self) -> dict:
        return {}

    def validation_predictions(self, model: keras.Model, index: DatasetIndex) -> Predictions | None:
        """The validation images' predictions, if this feed has a cheaper way than the images."""
        return None

    def pooled_features(self, model: keras.Model, samples: list) -> tuple[np.ndarray, np.ndarray] | None:
        """Pooled features and labels of `samples`, if this feed has a cheaper way than the images."""
        return None

    def input_functions(self) -> tuple[InputFunction, InputFunction]:
        """Training and validation batches for one worker of several (core.loop)."""
        raise PipelineError("only end_to_end mode trains across machines")


class ImageFeed(Feed):
    """End to end: decoded, freshly augmented images through the whole network."""

    def __init__(
        self, config: TrainConfig, train: list, val: list, n: int, skipped: SkippedFiles, replicas: int = 1
    ):
        self.config, self.samples, self.n, self.skipped = config, {"train": train, "val": val}, n, skipped
        self.augmenter = build_augmenter(config.augment, config.seed)
        # Each batch is split over the replicas: one smaller than that is left out.
        self.train = self._dataset("train", config.batch_size, min_batch=replicas)
        self.val = self._dataset("val", config.batch_size, min_batch=replicas)
        full, last = divmod(len(train), config.batch_size)
        self.batches = full + (last >= replicas)

    def _dataset(
        self, split: str, batch_size: int, shard: tuple[int, int] = (1, 0), min_batch: int = 1
    ) -> tf.data.Dataset:
        training = split == "train"
        return make_dataset(
            self.samples[split],
            self.n,
            self.config.input_size,
            batch_size,
            self.skipped,
            shuffle_seed=self.config.seed if training else None,
            augmenter=self.augmenter if training else None,
            shard=shard,
            min_batch=min_batch,
        )

    def for_phase(self, model, phase):
        return model, self.train, self.val, self.batches

    def input_functions(self) -> tuple[InputFunction, InputFunction]:
        def share(split: str) -> InputFunction:
            def make(context: tf.distribute.InputContext) -> tf.data.Dataset:
                # Per-replica batches: each goes whole to one replica, so none is empty.
                batch = context.get_per_replica_batch_size(self.config.batch_size)
                return self._dataset(split, batch, (context.num_input_pipelines, context.input_pipeline_id))

            return make

        return share("train"), share("val")

    def describe(self) -> dict:
        return {"mode": "end_to_end"}


class CachedFeed(Feed):
    """Cached: the head trains on pooled features, fine-tuning on boundary activations.

    Both trainable models share their layers with the full model, so training them
    trains it: the saved model is the same single flat graph as end to end.
    """

    def __init__(
        self,
        cache: ActivationCache,
        config: TrainConfig,
        model: keras.Model,
        train: list,
        val: list,
        n: int,
        skipped: SkippedFiles,
        recorder: RunRecorder,
    ):
        self.config, self.n, self.cache = config, n, cache
        views = config.cache_views
        before = self.stored_views()
        recorder.write_progress("caching", 0, force=True)
        digests = self.cache.build(model, train, views, skipped, progress=recorder.caching)
        digests.update(self.cache.build(model, val, 1, skipped, progress=recorder.caching))
        self.reused = before and self.stored_views() == before
        self.train, self.val, self.digests = train, val, digests
        self.boundary_model = keras.Model(model.get_layer(config.boundary()).output, model.output)

    def stored_views(self) -> int:
        return sum(1 for f in self.cache.files() if f.name.endswith("_pooled.npy"))

    def for_phase(self, model, phase):
        bs = self.config.batch_size
        if phase.unfreeze_from == "none":
            head_input = keras.Input((model.get_layer("avg_pool").output.shape[-1],))
            x = head_input
            names = {layer.name for layer in model.layers}
            for name in ("head_dropout", "predictions"):  # no dropout layer when dropout is 0
                if name in names:
                    x = model.get_layer(name)(x)
            head = keras.Model(head_input, x)
            x_train, y_train = self.cache.pooled(self.train, self.digests, self.config.cache_views)
            x_val, y_val = self.cache.pooled(self.val, self.digests, 1)
            eye = np.eye(self.n, dtype=np.float32)
            train = tf.data.Dataset.from_tensor_slices((x_train, eye[y_train]))
            train = train.shuffle(len(x_train), seed=self.config.seed).batch(bs)
            val = tf.data.Dataset.from_tensor_slices((x_val, eye[y_val])).batch(bs)
            return head, train, val, math.ceil(len(x_train) / bs)
        train = self.cache.dataset(
            self.train, self.digests, self.n, bs, self.config.cache_views, shuffle_seed=self.config.seed
        )
        val = self.cache.dataset(self.val, self.digests, self.n, bs, 1)
        return self.boundary_model, train, val, math.ceil(len(self.train) / bs)

    def validation_predictions(self, model: keras.Model, index: DatasetIndex) -> Predictions:
        """From the cached activations: equal to the images' up to float16 rounding (and
        bfloat16 arithmetic below the boundary in such a run), and only the blocks above
        the boundary run (calibration needs these predictions)."""
        upper = keras.Model(model.get_layer(self.config.boundary()).output, model.output)
        kept = [s for s in self.val if s in self.digests]
        data = self.cache.dataset(kept, self.digests, self.n, self.config.batch_size, 1)
        return Predictions(
            files=[index.relative(s) for s in kept],
            y_true=np.array([s.label for s in kept], dtype=int),
            probabilities=np.asarray(upper.predict(data, verbose=0), dtype=np.float64),
            skipped={},
            source="cached activations",
        )

    def pooled_features(self, model: keras.Model, samples: list) -> tuple[np.ndarray, np.ndarray]:
        """From the plain view's cached activations, through the blocks above the cut as
        the trained model has them (the cache's own pooled features are the backbone's
        before fine-tuning)."""
        boundary = model.get_layer(self.config.boundary()).output
        upper = keras.Model(boundary, model.get_layer("avg_pool").output)
        kept = [s for s in samples if s in self.digests]
        data = self.cache.dataset(kept, self.digests, self.n, self.config.batch_size, 1)
        labels = np.array([s.label for s in kept], dtype=int)
        return np.asarray(upper.predict(data, verbose=0), dtype=np.float32), labels

    def describe(self) -> dict:
        return {
            "mode": "cached",
            "cache_key": self.cache.plain_folder.name,  # the plain view's
            "augmented_cache_key": self.cache.folder.name if self.config.cache_views > 1 else None,
            "boundary": self.config.boundary(),
            "views": self.config.cache_views,
            "cache_reused": bool(self.reused),
            # Views computed from a lower cache's activations instead of from the images.
            "derived_from": self.cache.derived,
        }


def _meta(
    timings: dict,
    n_train: int,
    recorder: RunRecorder,
    skipped: SkippedFiles,
    feed: Feed,
    strategy: tf.distribute.Strategy,
    precision: str,
) -> dict:
    return {
        "feed": feed.describe(),
        "distribute": describe(strategy),
        "precision": precision,  # what "auto" stood for on this machine
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "train_images_per_s": {
            f"{r['phase']}": round(n_train / r["seconds"], 2) for r in recorder.history if r["seconds"]
        },
        "kept_epoch": recorder.kept_epoch,  # the model's weights are this epoch's
        "best_epoch": recorder.best_epoch,
        "best_val_loss": None if math.isinf(recorder.best_loss) else recorder.best_loss,
        "skipped_files": skipped.as_dict(),
        "versions": software_versions(),
    }
