"""Progress of long command-line work: a bar on a terminal, plain log lines elsewhere.

A log file, CI or nohup cannot show a bar redrawn with carriage returns, so when the
stream is not a terminal each report becomes one line, at most every `interval`
seconds, with the elapsed time and an estimate of the time left.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from core.io import read_json


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressLog:
    """Call with (done, total); prints progress of one task labelled `label`."""

    def __init__(
        self, label: str, stream: TextIO | None = None, interval: float = 10.0, tty: bool | None = None
    ) -> None:
        self.label, self.stream, self.interval = label, stream or sys.stderr, interval
        self.tty = self.stream.isatty() if tty is None else tty
        self.started = time.monotonic()
        self._last = -interval

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        finished = done >= total
        if self.tty:
            width = 30
            filled = int(width * done / total) if total else width
            end = "\n" if finished else ""
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {done}/{total} {self._eta(done, total, now)}{end}")
        elif finished or now - self._last >= self.interval:
            self._last = now
            share = f" ({100 * done / total:.0f}%)" if total else ""
            self.stream.write(f"{self.label}: {done}/{total}{share}, {self._eta(done, total, now)}\n")
        self.stream.flush()

    def _eta(self, done: int, total: int, now: float) -> str:
        elapsed = now - self.started
        if done >= total:
            return f"done in {clock(elapsed)}"
        if done == 0:
            return f"{clock(elapsed)} elapsed"
        return f"{clock(elapsed)} elapsed, about {clock(elapsed * (total - done) / done)} left"


STAGES = {
    "auditing": "auditing the dataset for copies (once per dataset)",
    "evaluating": "evaluating the kept model on Testing",
    "done": "done",
}


def describe_training(progress: dict) -> str:
    """One line from a run's progress.json."""
    stage = progress.get("stage", "?")
    if stage in STAGES:
        return STAGES[stage]
    if stage == "caching":
        return f"caching activations: {progress.get('batch') or 0}/{progress.get('batches') or '?'} images"
    epoch = f"{progress.get('epoch', '?')}/{progress.get('epochs', '?')}"
    line = f"{stage}: {progress.get('phase', '?')} epoch {epoch}"
    if progress.get("batch") is not None and stage == "training":
        line += f", batch {progress['batch']}/{progress.get('batches', '?')}"
    if progress.get("eta_s") is not None:
        line += f", about {clock(progress['eta_s'])} left"
    return line


class TrainingLog(threading.Thread):
    """Prints a line whenever a run's progress.json says something new, at most every
    `interval` seconds, until stopped: training writes that file, so the command line
    reports the same stages the app shows (the cache build included)."""

    def __init__(self, progress_file: Path, stream: TextIO | None = None, interval: float = 15.0) -> None:
        super().__init__(daemon=True)
        self.progress_file, self.stream, self.interval = progress_file, stream or sys.stdout, interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        said = None
        while not self._stop_event.wait(self.interval):
            progress = read_json(self.progress_file)
            line = describe_training(progress) if progress else None
            if line and line != said:
                said = line
                self.stream.write(f"[{time.strftime('%H:%M:%S')}] {line}\n")
                self.stream.flush()

    def stop(self) -> None:
        self._stop_event.set()
