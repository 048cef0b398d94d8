"""Hostile files, a tampered model, and kills at awkward moments."""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from conftest import ROOT, run_cli, tiny_config
from corpus import corpus
from streamlit.testing.v1 import AppTest

from app_pages.shared import ACCEPTED_UPLOADS
from core.data.images import load_rgb
from core.errors import ConfigError, ImageDecodeError, PipelineError
from core.registry import Registry, require_free_space, wait_for
from core.serving.inference import Classifier
from core.training.launcher import launch


@pytest.mark.parametrize("name", list(corpus()))
def test_decoder_on_the_corpus(name):
    data, reason = corpus()[name]
    if reason is None:
        assert load_rgb(data, 75, "pad").shape == (75, 75, 3)
    else:
        with pytest.raises(ImageDecodeError, match=reason):
            load_rgb(data, 75, "pad")


def test_classify_page_answers_every_file_of_the_corpus(tmp_path, monkeypatch, dataset, trained):
    models, run_id = trained
    monkeypatch.setenv("BTMRI_DATA", str(dataset))
    monkeypatch.setenv("BTMRI_MODELS", str(models))
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=300).run()
    at.switch_page("app_pages/classify.py").run()
    # The uploader itself refuses other extensions (.gif) before the app sees them.
    accepted = {n: v for n, v in corpus().items() if n.rsplit(".", 1)[-1] in ACCEPTED_UPLOADS}
    assert set(at.get("file_uploader")[0].allowed_type) == {f".{t}" for t in ACCEPTED_UPLOADS}
    files = [(name, data, "image/png") for name, (data, _) in accepted.items()]
    at.get("file_uploader")[0].set_value(files).run()
    assert not at.exception, [e.message for e in at.exception]
    errors = {e.value.split("**")[1]: e.value for e in at.error}
    predictions = [m.value for m in at.markdown if "prediction:" in m.value]
    for name, (_, reason) in accepted.items():
        if reason:
            assert reason in errors[name], name
        else:
            assert any(name in p for p in predictions), name
    assert len(predictions) == sum(r is None for _, r in accepted.values())


def test_command_line_answers_every_file_of_the_corpus(tmp_path, trained):
    models, run_id = trained
    paths = []
    for name, (data, _) in corpus().items():
        path = tmp_path / name
        path.write_bytes(data)
        paths.append(str(path))
    result = run_cli("predict", run_id, *paths, "--json", models=models)
    assert result.returncode == 0, result.stderr[-2000:]
    import json

    answers = {os.path.basename(a["file"]): a for a in json.loads(result.stdout)}
    for name, (_, reason) in corpus().items():
        if reason:
            assert reason in answers[name]["error"]
        else:
            assert answers[name]["label"] is not None


def test_tampered_or_foreign_model_files_are_reported_not_run(tmp_path, trained):
    models, run_id = trained
    registry_root = tmp_path / "models"
    shutil.copytree(models, registry_root)
    run = Registry(registry_root).get(run_id)
    run.model_path.write_bytes(b"not a keras archive")
    with pytest.raises(PipelineError, match="cannot be loaded safely"):
        Classifier(run)
    # A .keras archive whose config asks for a Lambda layer: safe mode refuses to build it.
    import keras

    inputs = keras.Input((4,))
    lam = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    lam.save(tmp_path / "lambda.keras")
    shutil.copy(tmp_path / "lambda.keras", run.model_path)
    with pytest.raises(PipelineError, match="cannot be loaded safely"):
        Classifier(run)
    with zipfile.ZipFile(run.model_path) as archive:
        assert "config.json" in archive.namelist()  # it was a real archive, refused on content


def test_sigkill_during_the_cache_build(dataset, tmp_path):
    registry = Registry(tmp_path / "models")
    config = tiny_config(dataset, cache_views=6, head_epochs=1, finetune_epochs=1)
    run = launch(registry, config)
    pid = run.status["pid"]
    try:
        assert wait_for(
            lambda: (
                (run.progress or {}).get("stage") == "caching" and (run.progress or {}).get("batch", 0) > 0
            ),
            timeout=300,
        ), run.log_tail()
    finally:
        os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: run.state == "failed", timeout=30)
    # A killed multi-threaded process can read as a zombie for a moment before the
    # kernel has closed its files (and released the flock): wait for that.
    assert wait_for(lambda: registry.lock_holder() is None, timeout=30)
    cache_files = list((registry.root / ".cache").rglob("*.npy"))
    assert cache_files
    for path in cache_files:  # every file left behind is whole
        assert np.load(path).size > 0
    # Killed between a write and its rename, the build may have left a temporary file: a
    # minute later the next build removes such leftovers, and never a young one (live).
    folder = cache_files[0].parent
    stale = [*folder.parent.rglob("*.npy.tmp"), folder / "tmpstale.npy.tmp"]
    stale[-1].write_bytes(b"half a file")
    for tmp in stale:
        os.utime(tmp, (time.time() - 120,) * 2)
    young = folder / "tmpyoung.npy.tmp"
    young.write_bytes(b"being written")
    # A new run starts, reuses the whole files and completes.
    again = launch(registry, config)
    assert wait_for(lambda: again.state != "running", timeout=600), again.log_tail()
    assert again.state == "completed", again.status
    assert not any(tmp.exists() for tmp in stale) and young.is_file()


def _digests(folder) -> dict[str, str]:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _killed(run, registry, pid) -> None:
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: run.state == "failed", timeout=30)
    assert wait_for(lambda: registry.lock_holder() is None, timeout=30)


def test_sigkill_in_the_finetune_phase_keeps_the_checkpoint_and_other_runs(dataset, trained, tmp_path):
    models, run_id = trained
    registry = Registry(tmp_path / "models")
    shutil.copytree(models / run_id, registry.root / run_id)
    before = _digests(registry.root / run_id)
    run = launch(registry, tiny_config(dataset, mode="end_to_end"))
    pid = run.status["pid"]

    def fine_tuning() -> bool:
        progress = run.progress or {}
        return progress.get("phase") == "finetune" and progress.get("batch", 0) > 0

    try:
        assert wait_for(fine_tuning, timeout=300), run.log_tail()
    finally:
        _killed(run, registry, pid)
    assert "checkpoint.keras" in run.status["error"]
    from core.model.network import load_model

    assert load_model(run.file("checkpoint.keras")).output_shape == (None, 4)  # whole, and safe to load
    assert not run.model_path.exists()
    assert _digests(registry.root / run_id) == before
    assert [r.id for r in registry.list() if r.state == "completed"] == [run_id]


def test_sigkill_while_writing_a_checkpoint_leaves_no_partial_model(dataset, tmp_path):
    registry = Registry(tmp_path / "models")
    run = launch(registry, tiny_config(dataset, finetune_epochs=0))
    pid = run.status["pid"]

    def partial() -> bool:  # core.io.atomic_path's temporary file beside checkpoint.keras
        return any(run.path.glob(".checkpoint.keras.*.keras"))

    try:
        # Caught while Keras writes the archive (the first epoch always saves one).
        assert wait_for(partial, timeout=300, interval=0.002), run.log_tail()
    finally:
        _killed(run, registry, pid)
    if run.file("checkpoint.keras").exists():  # killed during a later save: the previous one is whole
        from core.model.network import load_model

        assert load_model(run.file("checkpoint.keras")).output_shape == (None, 4)
    assert not run.model_path.exists()
    assert "killed or crashed" in run.status["error"]


def test_a_full_disk_while_saving_fails_the_run_with_a_clear_message(dataset, tmp_path):
    """The kernel's file-size limit makes every write past 20 MB fail as a full disk
    would: the model (~90 MB) cannot be saved, the small files can."""
    models = tmp_path / "models"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20 * 2**20, 20 * 2**20))

    command = [sys.executable, "-m", "core", "--models", str(models), "train", str(dataset)]
    command += ["--run-id", "full", "--weights", "none", "--input-size", "75", "--batch-size", "8"]
    command += ["--head-epochs", "1", "--unfreeze-from", "none"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, preexec_fn=limit)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "cannot save the model" in result.stderr and "File too large" in result.stderr
    run = Registry(models).get("full")
    assert run.state == "failed" and "cannot save the model" in run.status["error"]
    assert not list(run.path.glob("*.keras")) and not list(run.path.glob(".*.keras"))
    assert Registry(models).lock_holder() is None


def test_a_disk_too_small_for_the_run_is_refused_before_work(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    require_free_space(tmp_path, free // 2)
    with pytest.raises(ConfigError, match="not enough disk space"):
        require_free_space(tmp_path, free)
