"""The saliency sanity check (core.explanation.sanity): randomised copies of a real model change the
map, leave the model alone and repeat with their seed; Classify and Results show them."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import ROOT
from datagen import jpeg_bytes, slice_image
from streamlit.testing.v1 import AppTest

from core.explanation.explain import Explainer
from core.explanation.sanity import Cascade, cascade, group_layers, randomised_copy, step_name

TIMEOUT = 240  # the first check clones the model three times
TOGGLE = "Sanity check: randomise the model"


@pytest.fixture(scope="module")
def model(saliency_model):
    return saliency_model


@pytest.fixture(scope="module")
def image(saliency_image):
    return saliency_image


def kernels(model: keras.Model) -> dict[str, np.ndarray]:
    """The kernels of the convolutions and the dense head, by layer name. (An untrained
    batch normalisation holds its initial values already, so it cannot show a change.)"""
    return {layer.name: layer.kernel.numpy() for layer in model.layers if hasattr(layer, "kernel")}


def test_the_cascade_goes_down_from_the_head():
    assert [step_name(groups) for groups in cascade(2)] == [
        "head",
        "head + mixed10",
        "head + mixed10 + mixed9",
    ]
    with pytest.raises(ValueError, match="0 to 10 blocks"):
        cascade(11)


def test_randomised_maps_differ_and_the_model_is_left_alone(model, image):
    before = model.get_weights()
    check = Cascade(Explainer(model), depth=1, seed=0)
    result = check.check(image, 1, "Grad-CAM")
    assert [step.randomised for step in result.steps] == ["head", "head + mixed10"]
    for step in result.steps:
        assert step.heatmap.shape == result.real.shape == (150, 150)
        assert step.spearman < 0.9, step.randomised
        assert not np.allclose(step.heatmap, result.real, atol=0.05), step.randomised
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    # Each step re-initialises exactly its groups' layers, and the head alike at both.
    real = kernels(model)
    copies = [kernels(check.explainer_at(k).model) for k in range(len(check.steps))]
    for groups, copy in zip(check.steps, copies):
        randomised = {layer.name for group in groups for layer in group_layers(model, group)} & set(real)
        changed = {name for name, kernel in copy.items() if not np.array_equal(kernel, real[name])}
        assert changed == randomised
    assert np.array_equal(copies[0]["predictions"], copies[1]["predictions"])


def test_the_same_seed_draws_the_same_weights(model):
    groups = cascade(1)[-1]
    first, again, other = (kernels(randomised_copy(model, groups, seed)) for seed in (0, 0, 1))
    assert all(np.array_equal(first[name], again[name]) for name in first)
    assert not np.array_equal(first["predictions"], other["predictions"])


def sanity_output(at: AppTest) -> tuple[int, list[str], bool]:
    """(maps of randomised models, their correlation captions, whether the explanation shows)."""
    randomised = sum("randomised" in str(picture.proto) for picture in at.image)
    correlations = [c.value for c in at.caption if c.value.startswith("Rank correlation")]
    explained = any("does not show what the model learned" in c.value for c in at.caption)
    return randomised, correlations, explained


def test_classify_and_results_toggles_show_the_randomised_maps(app_env):
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT).run()
    at.switch_page("app_pages/classify.py").run()
    toggle = next(t for t in at.toggle if t.label == TOGGLE)
    assert toggle.value is False  # off by default: it costs extra passes
    scan = jpeg_bytes(slice_image(3, np.random.default_rng(5), size=90))
    at.get("file_uploader")[0].set_value([("scan.jpg", scan, "image/jpeg")]).run()
    assert sanity_output(at) == (0, [], False)
    toggle.set_value(True).run()
    assert not at.exception, [e.message for e in at.exception]
    randomised, correlations, explained = sanity_output(at)
    assert randomised == len(correlations) == 3 and explained
    at.switch_page("app_pages/results.py").run()
    next(t for t in at.toggle if t.label == TOGGLE).set_value(True).run()
    assert not at.exception, [e.message for e in at.exception]
    randomised, correlations, explained = sanity_output(at)
    assert randomised == len(correlations) == 3 and explained
