"""What a training run writes about itself as it goes: progress.json (stage, epoch,
batch, ETA), history.json (one record per epoch), the checkpoint of the weights to
keep, and meta.json (timings, throughput, the kept epoch, software versions).

The app follows a run only through these files, so they are always whole (atomic
writes) and machine-readable.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager

import keras
import numpy as np

from core.model.network import save_model
from core.registry import Run, now_iso
from core.training.lifecycle import StopFlag, StopRequested
from core.training.phases import Phase


class RunRecorder(keras.callbacks.Callback):
    """Writes progress.json (throttled), history.json, and the checkpoint: the latest
    epoch's weights (`keep` "last") or those of the lowest validation loss ("best")."""

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

    # -- meta.json ----------------------------------------------------------------------
    def meta(
        self, timings: Timings, n_train: int, feed: dict, devices: dict, precision: str, skipped: dict
    ) -> dict:
        """meta.json's content: how the images were fed, on which devices, in which
        precision ("auto" resolved), the timings, each phase's images per second, the
        kept and best epochs, the files left out and the software versions."""
        return {
            "feed": feed,
            "distribute": devices,
            "precision": precision,
            "timings": timings.rounded(),
            "train_images_per_s": {
                f"{r['phase']}": round(n_train / r["seconds"], 2) for r in self.history if r["seconds"]
            },
            "kept_epoch": self.kept_epoch,  # the model's weights are this epoch's
            "best_epoch": self.best_epoch,
            "best_val_loss": None if math.isinf(self.best_loss) else self.best_loss,
            "skipped_files": skipped,
            "versions": software_versions(),
        }


def write_stage(run: Run, stage: str) -> None:
    """Progress before training starts (the recorder needs the model)."""
    run.write("progress.json", {"stage": stage, "updated": now_iso()})


class Timings:
    """Seconds spent in each step of a run (meta.json's "timings")."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = time.monotonic() - start

    def finish(self) -> None:
        self.seconds["total_s"] = time.monotonic() - self.started

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 2) for k, v in self.seconds.items()}


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
