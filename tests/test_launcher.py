"""Training in a separate process: refusal of a second launch, Stop, and SIGKILL mid-run."""

from __future__ import annotations

import hashlib
import os
import signal

import pytest
from conftest import tiny_config

from core.config import TrainConfig
from core.errors import TrainingBusyError
from core.model.network import load_model
from core.registry import Registry, wait_for
from core.training.launcher import launch, stop


def slow_config(dataset) -> TrainConfig:
    return tiny_config(dataset, head_epochs=6, finetune_epochs=3, patience=10)


def folder_digest(path) -> str:
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*")):
        if file.is_file():
            digest.update(file.name.encode() + file.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def registry_with_bystander(tmp_path):
    registry = Registry(tmp_path / "models")
    bystander = registry.create("bystander")
    bystander.write("config.json", {"input_size": 75})
    bystander.set_status("completed")
    return registry, folder_digest(bystander.path)


def test_stop_keeps_best_checkpoint_and_second_launch_is_refused(dataset, registry_with_bystander):
    registry, bystander_digest = registry_with_bystander
    run = launch(registry, slow_config(dataset))
    try:
        assert registry.lock_holder() == run.id
        with pytest.raises(TrainingBusyError, match=run.id):
            launch(registry, slow_config(dataset))
        assert wait_for(lambda: len(run.history) >= 1, timeout=300), run.log_tail()
        progress = run.progress
        assert progress["phase"] == "head" and progress["epochs"] == 6
        assert {"elapsed_s", "eta_s", "batch", "batches", "metrics"} <= set(progress)
        assert stop(run)
        assert wait_for(lambda: run.state != "running", timeout=120), run.log_tail()
    finally:
        stop(run)
    assert run.state == "stopped", run.status
    assert run.model_path.is_file()
    assert load_model(run.model_path).output_shape == (None, 4)
    # A killed multi-threaded process can read as a zombie for a moment before the
    # kernel has closed its files (and released the flock): wait for that.
    assert wait_for(lambda: registry.lock_holder() is None, timeout=30)
    assert len(registry.list()) == 2  # the refused launch left no run behind
    assert folder_digest(registry.get("bystander").path) == bystander_digest


def test_sigkill_mid_training_leaves_a_failed_run_and_a_free_lock(dataset, registry_with_bystander):
    registry, bystander_digest = registry_with_bystander
    run = launch(registry, slow_config(dataset))
    pid = run.status["pid"]
    try:
        assert wait_for(lambda: (run.progress or {}).get("stage") == "training", timeout=300)
    finally:
        os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: run.state == "failed", timeout=30)
    assert "ended without finishing" in run.status["error"]
    assert not run.model_path.exists()
    assert run not in registry.completed()
    # A killed multi-threaded process can read as a zombie for a moment before the
    # kernel has closed its files (and released the flock): wait for that.
    assert wait_for(lambda: registry.lock_holder() is None, timeout=30)
    with registry.training_lock("next"):
        assert registry.lock_holder() == "next"
    assert folder_digest(registry.get("bystander").path) == bystander_digest
    assert [p.name for p in run.path.iterdir() if p.name.endswith(".tmp")] == []
