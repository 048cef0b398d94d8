"""Fixtures: a generated dataset and one tiny trained run, shared by the whole session."""

from __future__ import annotations

import json
import os
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
