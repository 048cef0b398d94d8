"""Training under tf.distribute: MirroredStrategy with two replicas on this CPU, and
MultiWorkerMirroredStrategy with two worker processes on localhost."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, TINY_TRAIN_ARGS, run_cli

from core.config import SIZE_IN_BFLOAT16, SIZE_IN_FLOAT32, TrainConfig, input_size_for
from core.data.dataset import scan_dataset
from core.data.pipeline import SkippedFiles, make_dataset
from core.errors import ConfigError
from core.registry import Registry
from core.resolve import auto_precision, resolve_config
from core.training.distribute import gpu_capabilities, has_bfloat16_units, machine_precision

# Two logical CPU devices stand in for two GPUs; they must exist before TensorFlow
# starts, hence a fresh process.
TWO_REPLICAS = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from core.config import TrainConfig
from core.registry import Registry
from core.training.train import prepare_run, train_run
config = TrainConfig(
    data_dir=sys.argv[1], weights="none", input_size=75, batch_size=8, head_epochs=1,
    finetune_epochs=1, unfreeze_from="mixed9", mode="end_to_end", strategy="mirrored",
)
registry = Registry(sys.argv[2])
train_run(registry, prepare_run(registry, config, "mirrored"), verbose=2)
"""


def run_script(script: str, dataset: Path, models: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", script, str(dataset), str(models)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_mirrored_training_on_two_replicas_gives_a_plain_model(dataset, tmp_path):
    models = tmp_path / "models"
    result = run_script(TWO_REPLICAS, dataset, models)
    assert result.returncode == 0, result.stderr[-3000:]
    run = Registry(models).get("mirrored")
    assert run.state == "completed", run.status
    assert run.read("meta.json")["distribute"] == {"strategy": "MirroredStrategy", "replicas": 2}
    assert run.config["strategy"] == "mirrored"
    assert [h["phase"] for h in run.history] == ["head", "finetune"]
    # The saved model is the ordinary flat model: it loads and predicts in a process
    # without any strategy, and gives the probabilities recorded at evaluation.
    from core.serving import batch
    from core.serving.inference import Classifier

    rows = run.predictions()
    results = batch.classify(Classifier(run), [(r["file"], dataset / r["file"]) for r in rows])
    for row, result in zip(rows, results):
        expected = [float(row[f"p_{c}"]) for c in run.classes]
        assert np.allclose(list(result.probabilities.values()), expected, atol=1e-4)


def test_a_last_batch_smaller_than_the_replica_count_is_left_out(dataset):
    # Split over two replicas, a last batch of one image leaves a replica nothing, and
    # TensorFlow's oneDNN convolutions fail on an empty batch: the mirrored run above
    # failed so when its training split left one image over.
    readable = [s for s in scan_dataset(dataset).training if s.path.name.startswith("Tr-")]

    def batch_sizes(count: int, min_batch: int) -> list[int]:
        ds = make_dataset(readable[:count], 4, 75, 8, SkippedFiles(), framing="pad", min_batch=min_batch)
        return [len(images) for images, _ in ds]

    assert batch_sizes(9, min_batch=1) == [8, 1]
    assert batch_sizes(9, min_batch=2) == [8]
    assert batch_sizes(10, min_batch=2) == [8, 2]


EIGHT_REPLICAS = TWO_REPLICAS.replace("* 2)", "* 8)").replace(
    'strategy="mirrored",', 'strategy="mirrored", val_fraction=0.02,'
)


def test_a_validation_set_smaller_than_the_replica_count_is_refused(dataset, tmp_path):
    # 2% of the tiny Training folder is a handful of images (about one a class): fewer
    # than 8 replicas, so every validation batch would leave a replica empty.
    models = tmp_path / "models"
    result = run_script(EIGHT_REPLICAS, dataset, models)
    run = Registry(models).get("mirrored")
    assert run.state == "failed", result.stderr[-3000:]
    refused = re.search(r"(\d+) validation images cannot be split over 8 replicas", run.status["error"])
    assert refused and int(refused.group(1)) < 8, run.status["error"]
    assert int(refused.group(1)) == len(run.read("data.json")["files"]["validation"])
    assert not run.model_path.exists()


def test_strategy_options_are_checked_before_work(dataset, tmp_path):
    with pytest.raises(ConfigError, match="activation cache runs on one device"):
        TrainConfig(data_dir=str(dataset), strategy="mirrored", mode="cached").validate()
    with pytest.raises(ConfigError, match="strategy must be one of"):
        TrainConfig(data_dir=str(dataset), strategy="tpu").validate()
    result = run_cli("train", str(dataset), "--strategy", "mirrored", models=tmp_path / "models")
    assert result.returncode == 2 and "--mode end_to_end" in result.stderr
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_worker(index: int, ports: list[int], dataset, models, *extra: str) -> subprocess.Popen:
    """`python -m core train` as one machine of a cluster would run it."""
    tf_config = {
        "cluster": {"worker": [f"localhost:{p}" for p in ports]},
        "task": {"type": "worker", "index": index},
    }
    command = [sys.executable, "-m", "core", "--models", str(models), "train", str(dataset)]
    command += [*TINY_TRAIN_ARGS, "--mode", "end_to_end", "--strategy", "multi_worker", "--run-id", "mw"]
    return subprocess.Popen(
        command + list(extra),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


def test_two_workers_on_localhost_train_one_model_together(dataset, tmp_path):
    ports = free_ports(2)
    registries = [tmp_path / f"worker{i}" for i in range(2)]
    # Batch norm trains too, so that its moving averages (no gradients) are shared as well.
    workers = [start_worker(i, ports, dataset, registries[i], "--train-batchnorm") for i in range(2)]
    logs = [w.communicate(timeout=900)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n".join(log[-3000:] for log in logs)

    runs = [Registry(r).get("mw") for r in registries]
    assert [r.state for r in runs] == ["completed", "completed"]
    for i, run in enumerate(runs):
        meta = run.read("meta.json")["distribute"]
        assert meta == {"strategy": "MultiWorkerMirroredStrategy", "replicas": 2, "workers": 2, "worker": i}
    # Each worker went through its own share of the training images; together, all of
    # them, but for a last step that would have left one worker an empty batch (TensorFlow's
    # oneDNN convolutions fail on those), which both leave out: less than a global batch.
    data = runs[0].read("data.json")
    train_files = {str(Path(data["root"], f)) for f in data["files"]["train"]}
    skipped = set().union(*(run.read("meta.json")["skipped_files"] for run in runs))
    n_train = len(train_files - skipped)  # the generated corrupt file is left out, once
    for epoch in zip(*(run.history for run in runs)):
        shares = [e["worker_examples"] for e in epoch]
        assert sum(shares) == epoch[0]["examples"]
        assert n_train - 8 < sum(shares) <= n_train  # 8: the global batch (TINY_TRAIN_ARGS)
        assert min(shares) >= n_train // 2 - 4  # an even split, up to one per-replica batch
        # One model: the same losses, reduced over both workers, on both sides.
        assert epoch[0]["loss"] == epoch[1]["loss"] and epoch[0]["val_loss"] == epoch[1]["val_loss"]
    # ... and the same weights, batch norm statistics included, in both saved models.
    from core.model.network import load_model

    weights = [load_model(run.model_path).get_weights() for run in runs]
    assert all(np.array_equal(a, b) for a, b in zip(*weights))
    assert runs[0].metrics["accuracy"] == runs[1].metrics["accuracy"]


def test_a_stop_on_one_worker_stops_all_workers_at_the_same_step(dataset, tmp_path):
    ports = free_ports(2)
    registries = [tmp_path / f"worker{i}" for i in range(2)]
    workers = [start_worker(i, ports, dataset, registries[i], "--finetune-epochs", "5") for i in range(2)]
    progress = registries[1] / "mw" / "progress.json"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and workers[1].poll() is None:
        state = json.loads(progress.read_text()) if progress.is_file() else {}
        if state.get("phase") == "finetune" and state.get("stage") == "training":
            break
        time.sleep(0.2)
    workers[1].send_signal(signal.SIGTERM)  # the Stop button (or Ctrl-C) on worker 1 only
    logs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n".join(log[-3000:] for log in logs)

    runs = [Registry(r).get("mw") for r in registries]
    # Worker 0 was not signalled, yet it stopped too, instead of waiting for worker 1.
    assert [r.state for r in runs] == ["stopped", "stopped"]
    assert [len(r.history) for r in runs][0] == len(runs[1].history) < 6
    from core.model.network import load_model

    weights = [load_model(run.model_path).get_weights() for run in runs]
    assert all(np.array_equal(a, b) for a, b in zip(*weights))


def test_multi_worker_needs_a_cluster_description(dataset, tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    models = tmp_path / "models"
    result = run_cli(
        "train", str(dataset), "--mode", "end_to_end", "--strategy", "multi_worker", models=models
    )
    assert result.returncode == 2 and "TF_CONFIG" in result.stderr
    assert not models.exists() or not any(models.iterdir())


def test_the_cross_machine_loop_trains_on_the_compiled_loss_label_smoothing_included():
    """core.training.loop (what multi-worker runs train with) takes each example's loss from the
    model's compiled loss: the losses it reports are Keras' own, smoothing included."""
    import keras
    import tensorflow as tf

    from core.training.lifecycle import StopFlag
    from core.training.loop import fit_distributed

    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 5)).astype("float32")
    y = np.eye(4, dtype="float32")[rng.integers(0, 4, 24)]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="softmax")])
    # A zero learning rate keeps the weights fixed, so the figures can be compared.
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=0.4)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss)

    def batches(context: tf.distribute.InputContext) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(8)

    history = keras.callbacks.History()
    strategy, never = tf.distribute.get_strategy(), StopFlag()
    fit_distributed(model, strategy, batches, batches, 1, [history], never, never, 0)
    probs = model.predict(x, verbose=0)
    smoothed = float(loss(y, probs))
    plain = float(keras.losses.categorical_crossentropy(y, probs).numpy().mean())
    assert abs(smoothed - plain) > 0.05  # the smoothing makes a visible difference here
    for name in ("loss", "val_loss"):
        assert history.history[name][0] == pytest.approx(smoothed, rel=1e-5)


def test_the_cross_machine_loop_gives_no_weight_to_an_empty_batch():
    """A worker whose share of the validation images ran out gets empty batches; the loop
    predicts a blank image in their place (convolutions fail on empty batches), which
    must not count in the validation figures."""
    import keras
    import tensorflow as tf

    from core.training.lifecycle import StopFlag
    from core.training.loop import fit_distributed

    rng = np.random.default_rng(1)
    x = rng.normal(size=(24, 5)).astype("float32")
    y = np.eye(4, dtype="float32")[rng.integers(0, 4, 24)]
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=keras.losses.CategoricalCrossentropy())

    def batches_then_an_empty_one(context: tf.distribute.InputContext) -> tf.data.Dataset:
        batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
        return batches.concatenate(tf.data.Dataset.from_tensors((x[:0], y[:0])))

    history = keras.callbacks.History()
    strategy, never = tf.distribute.get_strategy(), StopFlag()
    feed = batches_then_an_empty_one
    fit_distributed(model, strategy, feed, feed, 1, [history], never, never, 0)
    expected = float(keras.losses.categorical_crossentropy(y, model.predict(x, verbose=0)).numpy().mean())
    assert history.history["val_loss"][0] == pytest.approx(expected, rel=1e-5)
    assert history.history["examples"][0] == 24


def test_auto_precision_follows_the_devices_that_train():
    # Where GPUs train, the host CPU's AMX units do not decide.
    assert auto_precision(True, [(9, 0)]) == auto_precision(False, [(8, 0), (8, 6)]) == "mixed_bfloat16"
    assert auto_precision(True, [(7, 0)]) == auto_precision(True, [(8, 0), (7, 5)]) == "float32"
    assert auto_precision(True, []) == "mixed_bfloat16"
    assert auto_precision(False, []) == "float32"
    # This machine has no GPU: auto is what its CPU can do.
    assert gpu_capabilities() == []
    assert machine_precision() == auto_precision(has_bfloat16_units(), [])


def test_a_config_without_an_input_size_trains_at_the_size_its_arithmetic_affords(dataset):
    blank = TrainConfig(data_dir=str(dataset))
    assert blank.input_size is None and blank.validate() is blank
    assert resolve_config(replace(blank, precision="float32"), "mixed_bfloat16").input_size == SIZE_IN_FLOAT32
    in_bfloat16 = resolve_config(replace(blank, precision="mixed_bfloat16"), "float32")
    assert in_bfloat16.input_size == SIZE_IN_BFLOAT16 == 299
    assert in_bfloat16.precision == "mixed_bfloat16"
    # "auto" is made concrete as what the machine says it stands for.
    assert resolve_config(blank, "mixed_bfloat16").precision == "mixed_bfloat16"
    here = resolve_config(blank, machine_precision())
    assert here.precision == machine_precision() and here.input_size == input_size_for(here.precision)
    # A size the user names is kept, whatever the arithmetic.
    named = replace(blank, input_size=128, precision="mixed_bfloat16")
    assert resolve_config(named, "float32").input_size == 128


def test_the_config_records_augmentation_only_where_it_is_applied(trained):
    base = TrainConfig("data", weights="none")
    assert base.augment.enabled  # what the user asked for
    assert not resolve_config(base, "float32").augment.enabled  # cached, one view: images as they are
    assert resolve_config(replace(base, cache_views=3), "float32").augment.enabled
    assert resolve_config(replace(base, mode="end_to_end"), "float32").augment.enabled
    models, run_id = trained  # trained from the command line in cached mode with one view
    config = json.loads((models / run_id / "config.json").read_text())
    assert (config["mode"], config["cache_views"], config["augment"]["enabled"]) == ("cached", 1, False)
