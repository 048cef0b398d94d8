"""End to end through the command line: train, evaluate, predict, runs, and its errors."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from conftest import TINY_TRAIN_ARGS, run_cli

from core.data.dataset import scan_dataset
from core.registry import Registry
from core.serving import batch
from core.serving.inference import Classifier

RUN_FILES = [
    "config.json",
    "classes.json",
    "data.json",
    "history.json",
    "progress.json",
    "metrics.json",
    "predictions.csv",
    "meta.json",
    "model.keras",
    "status.json",
]


def test_run_folder_is_complete(trained, dataset):
    models, run_id = trained
    run = Registry(models).get(run_id)
    for name in RUN_FILES:
        assert run.file(name).is_file(), name
    assert not run.file("checkpoint.keras").exists()  # it became model.keras
    assert run.state == "completed"
    assert run.config["input_size"] == 75 and run.config["unfreeze_from"] == "mixed9"
    assert run.classes == ["glioma", "meningioma", "notumor", "pituitary"]
    assert [h["phase"] for h in run.history] == ["head", "finetune"]
    data = run.read("data.json")
    assert sum(data["counts"]["test"].values()) == 16
    assert sum(data["counts"]["train"].values()) + sum(data["counts"]["validation"].values()) == 54
    meta = run.read("meta.json")
    assert set(meta["timings"]) >= {"head_s", "finetune_s", "evaluate_s", "total_s"}
    assert meta["versions"]["tensorflow"]


def test_unreadable_training_file_is_reported_and_skipped(trained):
    models, run_id = trained
    meta = Registry(models).get(run_id).read("meta.json")
    reasons = {path.split("/")[-1]: reason for path, reason in meta["skipped_files"].items()}
    # The corrupt file is reported wherever the split put it (train or validation).
    assert "corrupt.jpg" in reasons
    assert "truncated or corrupt" in reasons["corrupt.jpg"]
    assert len(reasons) == 1  # the PNG-named-jpg, RGBA, palette and 16-bit files were read


def test_metrics_match_the_prediction_table(trained):
    models, run_id = trained
    run = Registry(models).get(run_id)
    rows = run.predictions()
    assert len(rows) == 16
    metrics = run.metrics
    assert metrics["accuracy"] == pytest.approx(np.mean([int(r["correct"]) for r in rows]))
    assert np.array(metrics["confusion_matrix"]).sum() == 16
    for row in rows:
        probs = [float(row[f"p_{c}"]) for c in run.classes]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert row["predicted"] == run.classes[int(np.argmax(probs))]


def test_reloaded_model_gives_the_saved_probabilities(trained, dataset):
    models, run_id = trained
    run = Registry(models).get(run_id)
    classifier = Classifier(run)
    rows = run.predictions()
    results = batch.classify(classifier, [(r["file"], dataset / r["file"]) for r in rows])
    for row, result in zip(rows, results):
        for c in run.classes:
            assert result.probabilities[c] == pytest.approx(float(row[f"p_{c}"]), abs=1e-5)


def test_predict_command_json(trained, dataset):
    models, run_id = trained
    image = next((dataset / "Testing" / "pituitary").iterdir())
    text_file = dataset.parent / "notes.jpg"
    text_file.write_text("not an image")
    result = run_cli("predict", run_id, str(image), str(text_file), "--json", models=models)
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert answers[0]["label"] in ["glioma", "meningioma", "notumor", "pituitary"]
    assert sum(answers[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert answers[1]["label"] is None and "not a readable image" in answers[1]["error"]


def test_evaluate_command_reproduces_metrics(trained, tmp_path):
    # On a copy: evaluating again recalibrates from the images, and other tests read the
    # shared run's calibration as training wrote it.
    shared, run_id = trained
    models = tmp_path / "models"
    shutil.copytree(shared, models)
    before = Registry(models).get(run_id).metrics
    result = run_cli("evaluate", run_id, models=models)
    assert result.returncode == 0, result.stderr
    after = Registry(models).get(run_id).metrics
    assert after["confusion_matrix"] == before["confusion_matrix"]
    assert f"Testing accuracy {after['accuracy']:.4f}" in result.stdout
    low, high = after["intervals"]["accuracy"]
    assert f"95% intervals: accuracy {low:.4f}-{high:.4f}" in result.stdout


def test_runs_command_lists_the_run(trained):
    models, run_id = trained
    result = run_cli("runs", "--json", models=models)
    rows = json.loads(result.stdout)
    assert [r["id"] for r in rows] == [run_id] and rows[0]["state"] == "completed"


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "/no/such/folder"], "dataset folder not found"),
        (["evaluate", "ghost"], "no run 'ghost'"),
        (["predict", "../../etc", "x.jpg"], "invalid run id"),
        (["train", "DATA", "--input-size", "40", "--weights", "none"], "below InceptionV3's minimum"),
        (["train", "DATA", "--weights", "/no/weights.h5"], "weights must be"),
    ],
)
def test_command_line_errors_are_one_clear_line(tmp_path, dataset, args, message):
    args = [str(dataset) if a == "DATA" else a for a in args]
    result = run_cli(*args, models=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip()[7:]}"]
    assert message in result.stderr.strip().splitlines()[0]
    assert "Traceback" not in result.stderr
    assert not any(p.is_dir() for p in tmp_path.iterdir())  # no run folder was left behind


def test_bad_option_is_refused_by_the_parser(tmp_path):
    result = run_cli("train", "x", "--unfreeze-from", "mixed99", models=tmp_path)
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_weights_of_the_wrong_architecture_end_with_one_error_line(tmp_path, dataset):
    import keras

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    other.save_weights(tmp_path / "other.weights.h5")
    result = run_cli(
        "train",
        str(dataset),
        "--weights",
        str(tmp_path / "other.weights.h5"),
        "--input-size",
        "75",
        models=tmp_path / "models",
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "not an InceptionV3" in result.stderr and "Traceback" not in result.stderr
    # The run it had started is recorded as failed, with the reason.
    (run,) = Registry(tmp_path / "models").list()
    assert run.state == "failed" and "not an InceptionV3" in run.status["error"]


def test_empty_dataset_is_refused(tmp_path):
    for split in ("Training", "Testing"):
        (tmp_path / "empty" / split).mkdir(parents=True)
    result = run_cli("train", str(tmp_path / "empty"), models=tmp_path / "models")
    assert result.returncode == 2 and "at least two class folders" in result.stderr


def test_csv_predictions_are_parseable(trained):
    models, run_id = trained
    with (models / run_id / "predictions.csv").open() as handle:
        header = next(csv.reader(handle))
    assert header[:4] == ["file", "true", "predicted", "correct"]


def test_dataset_used_by_run_matches_scan(trained, dataset):
    models, run_id = trained
    data = Registry(models).get(run_id).read("data.json")
    index = scan_dataset(dataset)
    assert data["counts"]["test"] == index.counts(index.testing)


def test_export_savedmodel_serves_the_same_probabilities(trained, tmp_path):
    import tensorflow as tf

    models, run_id = trained
    target = tmp_path / "serving" / "1"
    result = run_cli("export", run_id, "--out", str(target), models=models)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (target / "saved_model.pb").is_file()
    served = tf.saved_model.load(str(target))
    images = np.random.default_rng(0).uniform(0, 255, (2, 75, 75, 3)).astype(np.float32)
    classifier = Classifier(Registry(models).get(run_id))
    np.testing.assert_allclose(
        served.serve(tf.constant(images)).numpy(), classifier.probabilities(images), atol=1e-5
    )
    again = run_cli("export", run_id, "--out", str(target), models=models)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_cosine_schedule_falls_from_the_fine_tuning_rate_to_zero(dataset):
    from conftest import tiny_config

    from core.training.phases import plan_phases

    head, finetune = plan_phases(tiny_config(dataset, finetune_schedule="cosine", finetune_lr=3e-4))
    assert float(head.optimizer(10).learning_rate) == pytest.approx(head.learning_rate)  # constant
    schedule = finetune.optimizer(batches=10)._learning_rate
    rates = [float(schedule(step)) for step in (0, 10, 20)]  # 2 epochs of 10 batches
    assert rates[0] == pytest.approx(3e-4) and rates[1] == pytest.approx(1.5e-4) and rates[2] == 0.0
    with pytest.raises(Exception, match="finetune_schedule must be one of"):
        tiny_config(dataset, finetune_schedule="linear").validate()


def test_label_smoothing_trains_against_softened_targets(dataset, tmp_path):
    # Cross-entropy against a target distribution can never fall below that
    # distribution's entropy; with plain one-hot targets the same model fits far below it.
    smoothing, classes = 0.5, 4
    target = np.array([1 - smoothing + smoothing / classes] + [smoothing / classes] * (classes - 1))
    floor = float(-(target * np.log(target)).sum())  # 1.07 nats
    fit = ["--finetune-epochs", "6", "--finetune-lr", "1e-3", "--finetune-schedule", "constant"]
    args = [str(dataset), *TINY_TRAIN_ARGS, *fit, "--patience", "10"]
    losses = {}
    for name, extra in (("plain", []), ("smoothed", ["--label-smoothing", str(smoothing)])):
        result = run_cli("train", *args, *extra, "--run-id", name, models=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        history = json.loads((tmp_path / name / "history.json").read_text())
        losses[name] = [epoch["loss"] for epoch in history]
    assert json.loads((tmp_path / "smoothed" / "config.json").read_text())["label_smoothing"] == smoothing
    assert min(losses["smoothed"]) >= floor - 1e-3
    assert min(losses["plain"]) < floor - 0.3
    bad = run_cli("train", *args, "--label-smoothing", "1.5", models=tmp_path)
    assert bad.returncode == 2 and "label_smoothing must be in [0, 1)" in bad.stderr


def test_a_mixed_bfloat16_run_records_its_precision_and_keeps_a_float32_model(dataset, tmp_path):
    from conftest import tiny_config

    from core.config import TrainConfig, input_size_for
    from core.errors import ConfigError
    from core.model.network import load_model
    from core.training.distribute import machine_precision
    from core.training.train import prepare_run

    args = [str(dataset), *TINY_TRAIN_ARGS, "--precision", "mixed_bfloat16", "--run-id", "bf16"]
    result = run_cli("train", *args, models=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    run = Registry(tmp_path).get("bf16")
    assert (
        run.config["precision"] == "mixed_bfloat16" and run.read("meta.json")["precision"] == "mixed_bfloat16"
    )
    assert len(run.history) == 2 and all(np.isfinite(epoch["loss"]) for epoch in run.history)
    assert {layer.compute_dtype for layer in load_model(run.model_path).layers} == {"float32"}
    with pytest.raises(ConfigError, match="precision must be one of"):
        TrainConfig(data_dir=str(dataset), precision="float16").validate()
    # "auto" is written down as what it stands for on this machine, and no input size as
    # the size that arithmetic trains at.
    auto = prepare_run(Registry(tmp_path), tiny_config(dataset, input_size=None), "auto")
    assert auto.config["precision"] == machine_precision() != "auto"
    assert auto.config["input_size"] == input_size_for(auto.config["precision"])


def test_a_hand_written_config_without_the_machine_choices_trains_as_they_resolve(dataset, tmp_path):
    from conftest import tiny_config

    from core.config import input_size_for
    from core.training.distribute import machine_precision
    from core.training.train import prepare_run, train_run

    registry = Registry(tmp_path)
    run = prepare_run(registry, tiny_config(dataset, max_per_class=4, finetune_epochs=0), "by-hand")
    # As a user might write it: "auto" and no input size, not the numbers prepare_run writes.
    run.write("config.json", {**run.config, "precision": "auto", "input_size": None})
    train_run(registry, run, verbose=0)
    precision = machine_precision()
    assert run.state == "completed" and run.read("meta.json")["precision"] == precision
    size = input_size_for(precision)
    assert run.config["precision"] == precision and run.config["input_size"] == size
    classifier = Classifier(run)
    assert classifier.input_size == size and classifier.model.input_shape == (None, size, size, 3)


def test_cache_command_lists_and_clears_the_activation_cache(trained, tmp_path):
    shared, _ = trained
    models = tmp_path / "models"
    shutil.copytree(shared, models)  # a cached run: its plain-view folder comes along
    listed = json.loads(run_cli("cache", "--json", models=models).stdout)
    assert [(f["views"], f["boundary"], f["input_size"]) for f in listed] == [("plain", "mixed8", 75)]
    folder = models / ".cache" / listed[0]["key"]
    assert listed[0]["bytes"] == sum(p.stat().st_size for p in folder.iterdir())
    text = run_cli("cache", models=models).stdout
    assert listed[0]["key"] in text and "cut at mixed8" in text
    wrong = run_cli("cache", "--clear", "feedfacefeedfacefeedface", models=models)
    assert wrong.returncode == 2 and "no cache folder feedface" in wrong.stderr
    assert folder.is_dir()
    cleared = run_cli("cache", "--clear", models=models)
    assert cleared.returncode == 0 and "cleared 1 cache folder(s)" in cleared.stdout
    assert not folder.exists()
    assert json.loads(run_cli("cache", "--json", models=models).stdout) == []
    assert Registry(models).completed()  # the run and its model are untouched


@pytest.mark.parametrize("keep, kept", [("last", 3), ("best", 2)])
def test_the_checkpoint_holds_the_epoch_the_run_keeps(dataset, tmp_path, keep, kept):
    from conftest import tiny_config

    from core.model.network import build_model, load_model
    from core.training.lifecycle import StopFlag
    from core.training.phases import plan_phases
    from core.training.recorder import RunRecorder

    model = build_model(4, 75, "none")
    recorder = RunRecorder(
        Registry(tmp_path).create("r"), plan_phases(tiny_config(dataset)), model, StopFlag(), keep
    )
    bias = model.get_layer("predictions").bias
    for epoch, val_loss in enumerate([0.5, 0.3, 0.4, float("nan")]):  # the last one diverged
        bias.assign(np.full(4, float(epoch + 1)))  # marks each epoch's weights
        recorder.on_epoch_end(epoch, {"loss": 0.1, "val_loss": val_loss})
    saved = load_model(recorder.run.file("checkpoint.keras")).get_layer("predictions").bias
    assert np.asarray(saved).tolist() == [float(kept)] * 4
    assert (recorder.kept_epoch, recorder.best_epoch) == (kept, 2)


def test_a_run_keeps_its_last_epoch_by_default_or_its_best_with_early_stopping(dataset, tmp_path):
    from core.config import TrainConfig

    fit = ["--finetune-epochs", "3", "--finetune-lr", "3e-3", "--precision", "float32"]
    for keep in ("last", "best"):
        result = run_cli(
            "train", str(dataset), *TINY_TRAIN_ARGS, *fit, "--keep", keep, "--run-id", keep, models=tmp_path
        )
        assert result.returncode == 0, result.stderr[-2000:]
    last, best = (Registry(tmp_path).get(k) for k in ("last", "best"))
    assert last.config["keep"] == "last" and best.config["keep"] == "best"
    assert last.read("meta.json")["kept_epoch"] == len(last.history) == 4  # every epoch ran
    losses = [epoch["val_loss"] for epoch in best.history]
    assert best.read("meta.json")["kept_epoch"] == 1 + int(np.argmin(losses))
    # The saved model is the kept epoch's: its validation loss, recomputed by calibration
    # from the same cached activations, is the one that epoch recorded.
    for run in (last, best):
        kept = run.read("meta.json")["kept_epoch"]
        nll = run.read("calibration.json")["validation"]["nll_before"]
        assert nll == pytest.approx(run.history[kept - 1]["val_loss"], rel=1e-3)
    # A run saved before there was a choice kept its best epoch, and re-runs that way.
    older = {k: v for k, v in best.config.items() if k != "keep"}
    assert TrainConfig.from_dict(older).keep == "best"
    assert TrainConfig.from_dict(last.config).keep == "last"


def test_evaluating_on_a_dataset_with_other_classes_is_refused_and_keeps_the_figures(trained, tmp_path):
    from datagen import make_dataset

    from core.errors import DatasetError
    from core.evaluation.evaluate import evaluate_run, evaluate_tta

    models, run_id = trained
    run = Registry(models).get(run_id)
    before = run.file("metrics.json").read_bytes()
    other = make_dataset(tmp_path / "other", train_per_class=2, test_per_class=1, awkward=False)
    shutil.rmtree(other / "Training" / "pituitary")
    shutil.rmtree(other / "Testing" / "pituitary")
    index = scan_dataset(other)
    for evaluate in (evaluate_run, lambda r, i: evaluate_tta(r, i, [])):
        with pytest.raises(DatasetError, match="differ from the run's"):
            evaluate(run, index)
    assert run.file("metrics.json").read_bytes() == before
