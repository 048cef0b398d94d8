"""The run registry: ids, atomic files, statuses of dead runs, deletion, the training lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from core.errors import RunNotFoundError, TrainingBusyError
from core.io import atomic_write_bytes, atomic_write_json
from core.registry import Registry, validate_run_id, wait_for


@pytest.mark.parametrize("bad", ["", "../etc", "a/b", ".hidden", "x" * 200, "a..b", "/abs"])
def test_invalid_run_ids_are_refused(bad, tmp_path):
    with pytest.raises(RunNotFoundError, match="invalid run id"):
        validate_run_id(bad)
    with pytest.raises(RunNotFoundError):
        Registry(tmp_path).get(bad)


def test_atomic_json_leaves_no_temporary_files(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    atomic_write_json(tmp_path / "a.json", {"x": 2})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_failed_write_keeps_the_previous_file(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "a.json", "not bytes")  # fails after the temp file exists
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def dead_pid() -> tuple[int, float]:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(process.pid).create_time()
    process.wait()
    return process.pid, started


def test_running_run_whose_process_died_reads_as_failed(tmp_path):
    registry = Registry(tmp_path)
    run = registry.create("r1")
    run.write("config.json", {})
    pid, started = dead_pid()
    run.set_status("running", pid=pid, pid_started=started)
    assert run.state == "failed"
    assert "ended without finishing" in run.status["error"]


def test_list_get_delete_touch_only_runs(tmp_path):
    registry = Registry(tmp_path)
    for name in ("a", "b"):
        run = registry.create(name)
        run.write("config.json", {})
        run.set_status("completed")
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "notes.txt").write_text("keep me")
    assert sorted(r.id for r in registry.list()) == ["a", "b"]
    registry.delete("a")
    assert [r.id for r in registry.list()] == ["b"]
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    with pytest.raises(RunNotFoundError, match="no run"):
        registry.get("a")


def test_a_running_run_cannot_be_deleted(tmp_path):
    registry = Registry(tmp_path)
    run = registry.create("live")
    run.write("config.json", {})
    run.set_status("running", pid=os.getpid(), pid_started=psutil.Process().create_time())
    with pytest.raises(TrainingBusyError, match="stop it first"):
        registry.delete("live")
    assert run.path.is_dir()


def test_training_lock_is_exclusive_and_names_its_holder(tmp_path):
    registry = Registry(tmp_path)
    assert registry.lock_holder() is None
    with registry.training_lock("first"):
        assert registry.lock_holder() == "first"
        with pytest.raises(TrainingBusyError, match="first"):
            with registry.training_lock("second"):
                pass
    assert registry.lock_holder() is None


def test_lock_of_a_killed_process_is_released(tmp_path):
    code = (
        "import sys, time; from core.registry import Registry; "
        f"r = Registry({str(tmp_path)!r}); "
        "ctx = r.training_lock('doomed'); ctx.__enter__(); print('locked', flush=True); time.sleep(60)"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    registry = Registry(tmp_path)
    assert registry.lock_holder() == "doomed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    time.sleep(0.1)
    # A killed multi-threaded process can read as a zombie for a moment before the
    # kernel has closed its files (and released the flock): wait for that.
    assert wait_for(lambda: registry.lock_holder() is None, timeout=30)
    with registry.training_lock("next"):
        assert registry.lock_holder() == "next"
