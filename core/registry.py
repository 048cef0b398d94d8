"""The run registry: one folder per run under models/, written atomically.

A run folder holds config.json, classes.json, data.json (fingerprint), history.json,
progress.json, metrics.json, predictions.csv, meta.json (versions, timings),
model.keras and status.json. status.json is written first ("running") and last
("completed"), so a run killed at any moment never looks complete; a "running" run
whose process is gone is reported as failed.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from core.errors import ConfigError, RunNotFoundError, TrainingBusyError
from core.io import atomic_write_json, read_json

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
STATES = ("running", "completed", "failed", "stopped")
LOCK_NAME = ".training.lock"
CACHE_NAME = ".cache"  # activation caches and dataset audits, shared by a registry's runs
DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def require_free_space(path: Path, needed: int) -> None:
    """Raise ConfigError when the disk holding `path` has less than `needed` bytes free
    (with a 10% margin), before any work that would be lost to a full disk."""
    free = shutil.disk_usage(path).free
    if free < needed * 1.1:
        raise ConfigError(
            f"not enough disk space in {path}: {free / 2**20:,.0f} MB free, this run needs about "
            f"{needed * 1.1 / 2**20:,.0f} MB (free some space or delete old runs)"
        )


def validate_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID.match(run_id) or ".." in run_id:
        raise RunNotFoundError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-' only")
    return run_id


def process_alive(pid: int | None, started: float | None = None) -> bool:
    """True if `pid` runs and, when known, is the same process (not a reused pid)."""
    if not pid:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(process.create_time() - started) < 2.0
    except psutil.Error:
        return False


@dataclass
class Run:
    """A view of one run folder. Reads are cheap; nothing is cached."""

    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        return self.path / name

    def read(self, name: str, default: Any = None) -> Any:
        return read_json(self.path / name, default)

    def write(self, name: str, data: Any) -> None:
        atomic_write_json(self.path / name, data)

    @property
    def status(self) -> dict[str, Any]:
        """status.json, with a dead "running" process reported as failed."""
        status = self.read("status.json") or {
            "state": "failed",
            "error": "status.json is missing or unreadable",
        }
        if status.get("state") == "running" and not process_alive(
            status.get("pid"), status.get("pid_started")
        ):
            kept = (
                "; its checkpoint so far is kept as checkpoint.keras"
                if self.file("checkpoint.keras").is_file()
                else ""
            )
            status = {
                **status,
                "state": "failed",
                "error": f"the training process ended without finishing (killed or crashed){kept}",
            }
        return status

    @property
    def state(self) -> str:
        return self.status.get("state", "failed")

    def set_status(self, state: str, **extra: Any) -> None:
        assert state in STATES, state
        status = {**(self.read("status.json") or {}), "state": state, "updated": now_iso(), **extra}
        self.write("status.json", status)

    @property
    def config(self) -> dict[str, Any]:
        return self.read("config.json", {})

    @property
    def classes(self) -> list[str]:
        return self.read("classes.json", [])

    @property
    def metrics(self) -> dict[str, Any] | None:
        return self.read("metrics.json")

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.read("history.json", [])

    @property
    def progress(self) -> dict[str, Any] | None:
        return self.read("progress.json")

    @property
    def cache_dir(self) -> Path:
        """The cache folder of the registry this run belongs to."""
        return self.path.parent / CACHE_NAME

    @property
    def model_path(self) -> Path:
        return self.path / "model.keras"

    def predictions(self) -> list[dict[str, str]]:
        path = self.path / "predictions.csv"
        if not path.is_file():
            return []
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.file("train.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Registry:
    """All runs under one models folder."""

    def __init__(self, root: str | Path = DEFAULT_MODELS_DIR) -> None:
        self.root = Path(root).expanduser().resolve()

    def _path(self, run_id: str) -> Path:
        return self.root / validate_run_id(run_id)

    def new_run_id(self, hint: str = "") -> str:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = f"{stamp}-{hint}" if hint else stamp
        base = re.sub(r"[^A-Za-z0-9_.-]", "-", base)[:70]
        run_id, n = base, 1
        while (self.root / run_id).exists():
            n += 1
            run_id = f"{base}-{n}"
        return run_id

    def create(self, run_id: str) -> Run:
        path = self._path(run_id)
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()
        except FileExistsError:
            raise RunNotFoundError(f"a run named {run_id} already exists") from None
        return Run(path)

    def get(self, run_id: str) -> Run:
        path = self._path(run_id)
        if not (path / "status.json").is_file() and not (path / "config.json").is_file():
            raise RunNotFoundError(f"no run {run_id!r} in {self.root}")
        return Run(path)

    def list(self) -> list[Run]:
        """Runs, newest first. Folders without status or config are not runs."""
        if not self.root.is_dir():
            return []
        runs = [
            Run(p)
            for p in self.root.iterdir()
            if p.is_dir() and RUN_ID.match(p.name) and (p / "config.json").is_file()
        ]
        return sorted(runs, key=lambda r: r.path.stat().st_mtime, reverse=True)

    def completed(self) -> list[Run]:
        return [r for r in self.list() if r.state == "completed" and r.model_path.is_file()]

    def delete(self, run_id: str) -> None:
        run = self.get(run_id)
        if run.state == "running":
            raise TrainingBusyError(f"run {run_id} is still training; stop it first")
        shutil.rmtree(run.path)

    # --- one training at a time on this machine -------------------------------------
    @property
    def cache_dir(self) -> Path:
        return self.root / CACHE_NAME

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_NAME

    def lock_holder(self) -> str | None:
        """The run id that holds the training lock, or None if the lock is free.

        flock is released by the kernel when its process dies (even by SIGKILL), so a
        lock file left by a dead process is never mistaken for a live one.
        """
        if not self.lock_path.exists():
            return None
        with self.lock_path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                return handle.read().strip() or "unknown run"
            fcntl.flock(handle, fcntl.LOCK_UN)
            return None

    @contextlib.contextmanager
    def training_lock(self, run_id: str) -> Iterator[None]:
        """Hold the machine-wide training lock, or raise TrainingBusyError."""
        self.root.mkdir(parents=True, exist_ok=True)
        handle = self.lock_path.open("a+")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another run"
                raise TrainingBusyError(f"a training is already running: {holder}") from None
            handle.seek(0)
            handle.truncate()
            handle.write(run_id)
            handle.flush()
            yield
        finally:
            handle.close()  # closing releases the flock


def wait_for(predicate, timeout: float, interval: float = 0.1) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
