"""Training under tf.distribute: MirroredStrategy with two replicas on this CPU."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, run_cli

from core.config import TrainConfig
from core.errors import ConfigError
from core.registry import Registry

# Two logical CPU devices stand in for two GPUs; they must exist before TensorFlow
# starts, hence a fresh process.
TWO_REPLICAS = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from core.config import TrainConfig
from core.registry import Registry
from core.train import prepare_run, train_run
config = TrainConfig(
    data_dir=sys.argv[1], weights="none", input_size=75, batch_size=8, head_epochs=1,
    finetune_epochs=1, unfreeze_from="mixed9", mode="end_to_end", strategy="mirrored",
)
registry = Registry(sys.argv[2])
train_run(registry, prepare_run(registry, config, "mirrored"), verbose=2)
"""


def test_mirrored_training_on_two_replicas_gives_a_plain_model(dataset, tmp_path):
    models = tmp_path / "models"
    result = subprocess.run(
        [sys.executable, "-c", TWO_REPLICAS, str(dataset), str(models)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = Registry(models).get("mirrored")
    assert run.state == "completed", run.status
    assert run.read("meta.json")["distribute"] == {"strategy": "MirroredStrategy", "replicas": 2}
    assert run.config["strategy"] == "mirrored"
    assert [h["phase"] for h in run.history] == ["head", "finetune"]
    # The saved model is the ordinary flat model: it loads and predicts in a process
    # without any strategy, and gives the probabilities recorded at evaluation.
    from core import batch
    from core.inference import Classifier

    rows = run.predictions()
    results = batch.classify(Classifier(run), [(r["file"], dataset / r["file"]) for r in rows])
    for row, result in zip(rows, results):
        expected = [float(row[f"p_{c}"]) for c in run.classes]
        assert np.allclose(list(result.probabilities.values()), expected, atol=1e-4)


def test_strategy_options_are_checked_before_work(dataset, tmp_path):
    with pytest.raises(ConfigError, match="activation cache runs on one device"):
        TrainConfig(data_dir=str(dataset), strategy="mirrored", mode="cached").validate()
    with pytest.raises(ConfigError, match="strategy must be one of"):
        TrainConfig(data_dir=str(dataset), strategy="tpu").validate()
    result = run_cli("train", str(dataset), "--strategy", "mirrored", models=tmp_path / "models")
    assert result.returncode == 2 and "--mode end_to_end" in result.stderr
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())
