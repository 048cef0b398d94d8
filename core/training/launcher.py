"""Starting and stopping training in a separate process (used by the app).

The training process outlives the browser tab and the script run that started it, and
every session sees it through the registry. One training at a time per machine: the
registry's lock (an flock, released by the kernel if the process dies) decides.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil

from core.config import TrainConfig
from core.errors import PipelineError, TrainingBusyError
from core.registry import Registry, Run, now_iso, process_alive, wait_for

PROJECT_ROOT = Path(__file__).resolve().parents[2]
_launching = threading.Lock()  # serialises launches from the threads of one app server


def launch(registry: Registry, config: TrainConfig, timeout: float = 120.0) -> Run:
    """Start `python -m core train` for a new run; return once it holds the lock."""
    from core.training.train import prepare_run  # heavy (TensorFlow), only needed here

    with _launching:
        holder = registry.lock_holder()
        if holder:
            raise TrainingBusyError(f"a training is already running: {holder}")
        run = prepare_run(registry, config)
        with run.file("train.log").open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "core",
                    "--models",
                    str(registry.root),
                    "train",
                    "--prepared-run",
                    run.id,
                ],
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        # Reap the child when it ends so it never lingers as a zombie.
        threading.Thread(target=process.wait, daemon=True).start()
        run.set_status(
            "running",
            pid=process.pid,
            started=now_iso(),
            pid_started=psutil.Process(process.pid).create_time(),
        )
        wait_for(lambda: registry.lock_holder() == run.id or process.poll() is not None, timeout)
        if process.poll() is not None and run.state != "completed":
            error = run.status.get("error") or run.log_tail(5) or "the training process exited"
            raise PipelineError(f"training {run.id} did not start: {error}")
        return run


def launch_ensemble(
    registry: Registry, member_ids: list[str], weights: list[float], timeout: float = 120.0
) -> str:
    """Start `python -m core ensemble` in the background; return the new run's id (the
    run appears in the registry at once and is evaluated in a few minutes)."""
    from core.training.ensemble import check_members, normalised

    check_members([registry.get(i) for i in member_ids])
    normalised(weights, len(member_ids))
    run_id = registry.new_run_id("ensemble")
    log = registry.root / f".{run_id}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "core", "--models", str(registry.root), "ensemble", *member_ids]
            + ["--member-weights", ",".join(str(w) for w in weights), "--run-id", run_id],
            cwd=PROJECT_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    threading.Thread(target=process.wait, daemon=True).start()
    # Return once the run exists (seconds: TensorFlow's import), so it can be shown.
    status = registry.root / run_id / "status.json"
    wait_for(lambda: status.is_file() or process.poll() is not None, timeout)
    if not status.is_file():
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise PipelineError(f"ensemble {run_id} did not start: {' '.join(tail) or 'the process exited'}")
    return run_id


def stop(run: Run) -> bool:
    """Ask a running training to stop (SIGTERM); it keeps its checkpoint (config.keep).

    Returns False if the run was not running.
    """
    status = run.read("status.json") or {}
    pid = status.get("pid")
    if status.get("state") != "running" or not process_alive(pid, status.get("pid_started")):
        return False
    os.kill(pid, signal.SIGTERM)
    return True
