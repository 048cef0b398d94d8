"""Fixtures: a generated dataset and one tiny trained run, shared by the whole session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from datagen import make_dataset  # noqa: E402

# The tiny run: InceptionV3 at its minimum input size, random weights, one epoch a phase.
TINY_TRAIN_ARGS = [
    "--weights",
    "none",
    "--input-size",
    "75",
    "--batch-size",
    "8",
    "--head-epochs",
    "1",
    "--finetune-epochs",
    "1",
    "--unfreeze-from",
    "mixed9",
]


def tiny_config(dataset: Path, **overrides):
    """A TrainConfig for the generated dataset that trains in about a minute."""
    from core.config import TrainConfig

    settings = dict(
        data_dir=str(dataset),
        weights="none",
        input_size=75,
        batch_size=4,
        head_epochs=2,
        finetune_epochs=2,
        unfreeze_from="mixed9",
        patience=5,
    )
    return TrainConfig(**(settings | overrides))


def run_cli(*args: str, models: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m core ...` in a real subprocess, as a user would run it."""
    command = [sys.executable, "-m", "core"]
    if models is not None:
        command += ["--models", str(models)]
    return subprocess.run(
        command + list(args),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "mri")


@pytest.fixture(scope="session")
def trained(tmp_path_factory, dataset):
    """(registry folder, run id) of a run trained end to end through the command line."""
    models = tmp_path_factory.mktemp("models")
    result = run_cli("train", str(dataset), *TINY_TRAIN_ARGS, "--run-id", "tiny", models=models)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (models / "tiny" / "status.json").is_file()
    assert json.loads((models / "tiny" / "status.json").read_text())["state"] == "completed"
    return models, "tiny"


@pytest.fixture
def app_env(tmp_path, monkeypatch, dataset, trained):
    """The app's environment for AppTest: the generated dataset and a copy of the trained
    registry (a page may write to it). Returns (Registry, run id)."""
    from core.registry import Registry

    models, run_id = trained
    registry_root = tmp_path / "models"
    shutil.copytree(models, registry_root)
    monkeypatch.setenv("BTMRI_DATA", str(dataset))
    monkeypatch.setenv("BTMRI_MODELS", str(registry_root))
    return Registry(registry_root), run_id


@pytest.fixture(scope="module")
def saliency_model():
    """A weights-none InceptionV3 at 150 px (mixed10 is 3x3: maps with structure) whose
    head has random, non-zero weights, so every class has a map."""
    import keras
    import numpy as np

    from core.model.network import build_model

    keras.utils.set_random_seed(3)
    model = build_model(4, 150, "none")
    head = model.get_layer("predictions")
    head.kernel.assign(np.random.default_rng(0).normal(0, 0.05, head.kernel.shape).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def saliency_image():
    """A 150-px image with a bright blob off centre and two gradients."""
    import numpy as np

    y, x = np.mgrid[0:150, 0:150] / 150
    blob = np.exp(-(((x - 0.3) ** 2 + (y - 0.6) ** 2) / 0.02))
    return (np.stack([blob, x, y], -1) * 255).astype(np.uint8)
