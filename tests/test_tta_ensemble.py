"""Test-time augmentation and ensembles: averaging, geometry, compatibility, the registry."""

from __future__ import annotations

import csv
import json
import shutil

import keras
import numpy as np
import pytest
from conftest import run_cli

from core.errors import ConfigError
from core.model.network import build_ensemble, ensemble_members, load_model
from core.model.tta import VIEWS, tta_heatmap, tta_probabilities, views
from core.registry import Registry
from core.training.ensemble import check_members, normalised


def scene(size: int = 96) -> np.ndarray:
    """A smooth, asymmetric image: a diagonal ramp plus a bright blob right of centre."""
    y, x = np.mgrid[0:size, 0:size] / size
    red = 0.5 * x + 0.2 * y + 0.5 * np.exp(-(((x - 0.7) ** 2 + (y - 0.4) ** 2) / 0.01))
    image = np.stack([red, y, x], axis=-1)
    return (image / image.max() * 255).astype(np.uint8)


def red(image: np.ndarray) -> np.ndarray:
    """An equivariant "saliency map": it moves exactly as the image moves."""
    return image[..., 0].astype(np.float32) / 255.0


def interior(mask: np.ndarray, margin: int = 3) -> np.ndarray:
    """The mask eroded by `margin` pixels (edges carry interpolation error)."""
    inner = mask > 0
    for _ in range(margin):
        inner = (
            inner
            & np.roll(inner, 1, 0)
            & np.roll(inner, -1, 0)
            & np.roll(inner, 1, 1)
            & np.roll(inner, -1, 1)
        )
    return inner


@pytest.mark.parametrize("name", list(VIEWS))
def test_each_view_maps_its_map_back_to_the_original_geometry(name):
    view, image = VIEWS[name], scene()
    mapped, mask = view.invert(red(view.apply(image)))
    inside = interior(mask)
    assert inside.mean() > 0.6  # most of the scan is covered
    error = np.abs(mapped - red(image))[inside].mean()
    assert error < 0.005
    if name != "original":  # without the inverse the maps disagree: the check has teeth
        assert np.abs(red(view.apply(image)) - red(image))[inside].mean() > 5 * error + 0.005


def test_tta_heatmap_is_the_mean_of_the_mapped_back_views():
    image = scene()
    averaged = tta_heatmap(red, image, views(list(VIEWS)))
    centre = np.zeros(image.shape[:2], bool)
    centre[12:-12, 12:-12] = True
    assert np.abs(averaged - red(image))[centre].mean() < 0.02
    # An image-independent map of ones stays ones wherever any view covers the pixel.
    ones = tta_heatmap(lambda im: np.ones(im.shape[:2], np.float32), image, views(list(VIEWS)))
    assert np.allclose(ones[centre], 1.0)


def left_right_softmax(images: np.ndarray) -> np.ndarray:
    """A constructed classifier: softmax of the mean brightness of the left and right halves."""
    half = images.shape[2] // 2
    logits = np.stack([images[:, :, :half].mean((1, 2, 3)), images[:, :, half:].mean((1, 2, 3))], 1) / 20
    exp = np.exp(logits - logits.max(1, keepdims=True))
    return exp / exp.sum(1, keepdims=True)


def test_tta_probabilities_average_the_views_per_image():
    images = np.stack([scene(), scene()[::-1], np.zeros((96, 96, 3), np.uint8)])
    single = left_right_softmax(images)
    assert not np.allclose(single[0], [0.5, 0.5])
    # A mirror view swaps the halves, so original + flip is exactly even for every image.
    assert np.allclose(tta_probabilities(left_right_softmax, images, views(["original", "flip"])), 0.5)
    mixed = tta_probabilities(left_right_softmax, images, views(["original", "rotate+10"]))
    rotated = left_right_softmax(np.stack([VIEWS["rotate+10"].apply(i) for i in images]))
    assert np.allclose(mixed, (single + rotated) / 2)
    with pytest.raises(ConfigError, match="unknown or no TTA views"):
        views(["upside-down"])


def constant_model(bias: list[float], size: int = 16) -> keras.Model:
    """A model whose softmax is the same for every image: softmax(bias)."""
    inputs = keras.Input((size, size, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(len(bias), activation="softmax", kernel_initializer="zeros")
    outputs = dense(pooled)
    dense.bias.assign(np.array(bias, np.float32))
    return keras.Model(inputs, outputs)


def test_an_ensemble_model_outputs_the_weighted_mean_and_survives_safe_loading(tmp_path):
    a, b = constant_model([2.0, 0.0, 0.0, 0.0]), constant_model([0.0, 0.0, 3.0, 0.0])
    images = np.random.default_rng(0).uniform(0, 255, (3, 16, 16, 3)).astype(np.float32)
    pa, pb = a.predict(images, verbose=0), b.predict(images, verbose=0)
    ensemble = build_ensemble([a, b], [0.25, 0.75])
    expected = 0.25 * pa + 0.75 * pb
    assert np.allclose(ensemble.predict(images, verbose=0), expected, atol=1e-6)
    ensemble.save(tmp_path / "ensemble.keras")
    loaded = load_model(tmp_path / "ensemble.keras")
    assert np.allclose(loaded.predict(images, verbose=0), expected, atol=1e-6)
    assert [(name, weight) for name, _, weight in ensemble_members(loaded)] == [
        ("member_0", 0.25),
        ("member_1", 0.75),
    ]
    assert ensemble_members(a) == []


def fake_run(registry: Registry, run_id: str, classes=("a", "b"), size=75, **config) -> None:
    run = registry.create(run_id)
    run.write("config.json", {"input_size": size, **config})
    run.write("classes.json", list(classes))
    run.write("status.json", {"state": "completed"})
    run.model_path.write_bytes(b"placeholder: check_members never loads it")


def test_incompatible_members_are_refused(tmp_path):
    registry = Registry(tmp_path / "models")
    fake_run(registry, "one")
    fake_run(registry, "two")
    fake_run(registry, "other-classes", classes=("a", "c"))
    fake_run(registry, "other-size", size=299)
    fake_run(registry, "other-framing", framing="head")  # "one" has none: padded
    fake_run(registry, "ens", kind="ensemble")
    registry.create("unfinished").write("config.json", {"input_size": 75})
    check_members([registry.get("one"), registry.get("two")])
    for ids, reason in [
        (["one"], "at least two different runs"),
        (["one", "one"], "at least two different runs"),
        (["one", "other-classes"], "different classes"),
        (["one", "other-size"], "different input sizes"),
        (["one", "other-framing"], "frame their images differently"),
        (["one", "ens"], "itself an ensemble"),
        (["one", "unfinished"], "no finished model"),
    ]:
        with pytest.raises(ConfigError, match=reason):
            check_members([registry.get(i) for i in ids])
    assert normalised([1, 3], 2) == [0.25, 0.75]
    for weights in ([1.0], [0.0, 0.0], [-1.0, 2.0]):
        with pytest.raises(ConfigError, match="non-negative weights"):
            normalised(weights, 2)
    result = run_cli("ensemble", "one", "other-size", models=registry.root)
    assert result.returncode == 2 and "different input sizes" in result.stderr


def test_an_ensemble_is_a_first_class_run(trained, dataset, tmp_path):
    models, run_id = trained
    registry = Registry(tmp_path / "models")
    shutil.copytree(models / run_id, registry.root / run_id)
    shutil.copytree(models / run_id, registry.root / "twin")
    result = run_cli(
        "ensemble", run_id, "twin", "--member-weights", "1,3", "--run-id", "ens", models=registry.root
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ens = registry.get("ens")
    assert ens.state == "completed" and ens.config["members"] == [run_id, "twin"]
    assert ens.config["member_weights"] == [0.25, 0.75]
    assert ens.config["framing"] == registry.get(run_id).config["framing"]  # it sees what they saw
    assert ens.metrics["clean"]["n"] + ens.metrics["clean"]["excluded"] == ens.metrics["n"]
    assert ens.read("calibration.json")["temperature"] > 0  # the members share validation images
    # Identical members: the ensemble gives the member's probabilities, file by file.
    member = {r["file"]: r for r in registry.get(run_id).predictions()}
    for row in ens.predictions():
        for c in ens.classes:
            assert float(row[f"p_{c}"]) == pytest.approx(float(member[row["file"]][f"p_{c}"]), abs=1e-4)
    listed = json.loads(run_cli("runs", "--json", models=registry.root).stdout)
    assert "ens" in [r["id"] for r in listed]
    # Saliency: one map per member, and their weighted mean.
    from core.explanation.explain import Explainer
    from core.serving.inference import Classifier

    classifier = Classifier(ens)
    image = classifier.prepare(next((dataset / "Testing" / "glioma").iterdir()))
    explainer = Explainer(classifier.model)
    assert explainer.is_ensemble and [w for _, _, w in explainer.members] == [0.25, 0.75]
    first, second = (explainer.member_heatmap(image, 0, member=i) for i in (0, 1))
    assert first.shape == (75, 75) and np.allclose(first, second, atol=1e-4)
    assert np.allclose(explainer.heatmap(image, 0), 0.25 * first + 0.75 * second, atol=1e-5)


def test_tta_evaluation_and_prediction(trained, dataset, tmp_path):
    models, run_id = trained
    registry = Registry(tmp_path / "models")
    shutil.copytree(models / run_id, registry.root / run_id)
    result = run_cli("evaluate", run_id, "--tta", "--tta-views", "original,flip", models=registry.root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "with TTA (original, flip)" in result.stdout
    run = registry.get(run_id)
    tta = run.read("tta.json")
    assert tta["views"] == ["original", "flip"] and tta["n"] == run.metrics["n"]
    assert tta["clean"]["n"] == run.metrics["clean"]["n"]
    from core.data.images import load_rgb
    from core.serving.inference import Classifier

    classifier = Classifier(run)
    plain = {r["file"]: r for r in run.predictions()}
    rows = list(csv.DictReader(run.file("predictions-tta.csv").open()))
    for row in rows[:4]:
        image = load_rgb(dataset / row["file"], 75, classifier.framing)
        both = classifier.probabilities(np.stack([image, image[:, ::-1]]))
        expected = both.mean(axis=0)
        assert [float(row[f"p_{c}"]) for c in run.classes] == pytest.approx(expected.tolist(), abs=1e-5)
        assert [float(plain[row["file"]][f"p_{c}"]) for c in run.classes] == pytest.approx(
            both[0].tolist(), abs=1e-5
        )
    bad = run_cli("predict", run_id, str(dataset), "--tta", "--tta-views", "sideways", models=registry.root)
    assert bad.returncode == 2 and "unknown or no TTA views" in bad.stderr
