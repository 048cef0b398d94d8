"""A training run's lifecycle: the machine-wide lock, the status the run moves through
(running, then completed, stopped or failed), stop requests, and the disk check before
any work starts.

SIGTERM or SIGINT (the app's Stop button, Ctrl-C) stops training at the next batch: the
run is marked "stopped" and its checkpoint, if an epoch finished, becomes its model.
"""

from __future__ import annotations

import math
import os
import signal
import threading
from collections.abc import Callable
from contextlib import ExitStack

import keras
import psutil

from core.config import TrainConfig
from core.errors import TrainingBusyError
from core.registry import Registry, Run, now_iso, require_free_space
from core.training.cache import ActivationCache


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


def run_locked(registry: Registry, run: Run, stop: StopFlag, work: Callable[[], None]) -> None:
    """Do `work` under the machine-wide training lock, and always leave a final status:
    "failed" with the error (raised again), "stopped" or "completed"."""
    with ExitStack() as held:
        try:
            held.enter_context(registry.training_lock(run.id))
        except TrainingBusyError as exc:
            run.set_status("failed", error=str(exc), ended=now_iso())
            raise
        run.set_status(
            "running",
            pid=os.getpid(),
            pid_started=psutil.Process().create_time(),
            started=now_iso(),
            error=None,
        )
        try:
            work()
        except StopRequested:
            pass
        except BaseException as exc:
            message = str(exc) or type(exc).__name__
            run.set_status("failed", error=message, ended=now_iso())
            raise
        _finish(run, stop)


def _finish(run: Run, stop: StopFlag) -> None:
    if run.state != "running":
        return
    if not stop.requested:
        run.set_status("completed", ended=now_iso(), error=None)
        return
    checkpoint = run.file("checkpoint.keras")
    if checkpoint.is_file():
        os.replace(checkpoint, run.model_path)
        note = "stopped by request; the checkpoint is kept as model.keras"
    else:
        note = "stopped before the first epoch finished; no model was saved"
    run.set_status("stopped", ended=now_iso(), error=None, note=note)


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
