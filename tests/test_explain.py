"""Saliency maps: the closed-form Grad-CAM against tf-keras-vis, every method, overlays."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from core.explain import METHODS, Explainer, PooledGradcam, overlay
from core.model import build_model


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(3)
    model = build_model(4, 150, "none")  # mixed10 is 3x3 at 150 px: maps with structure
    head = model.get_layer("predictions")
    head.kernel.assign(np.random.default_rng(0).normal(0, 0.05, head.kernel.shape).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def image():
    y, x = np.mgrid[0:150, 0:150] / 150
    blob = np.exp(-(((x - 0.3) ** 2 + (y - 0.6) ** 2) / 0.02))
    return (np.stack([blob, x, y], -1) * 255).astype(np.uint8)


def test_pooled_gradcam_gives_tf_keras_vis_maps(model, image):
    fast = PooledGradcam(model)
    reference = Explainer(model, fast_gradcam=False)
    maps = []
    for c in range(4):
        ours, theirs = fast(image, c), reference.member_heatmap(image, c, "Grad-CAM")
        assert ours.shape == theirs.shape == (150, 150)
        np.testing.assert_allclose(ours, theirs, atol=2e-3)
        maps.append(ours)
    assert np.abs(maps[0] - maps[1]).mean() > 0.01  # the class matters: the check has teeth


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_a_map_in_range(model, image, method):
    heat = Explainer(model, score_cam_channels=8).heatmap(image, 1, method)
    assert heat.shape == (150, 150) and heat.dtype == np.float32
    assert 0.0 <= heat.min() and heat.max() <= 1.0


def test_overlay_blends_the_map_onto_the_image(image):
    heat = np.linspace(0, 1, 75 * 75, dtype=np.float32).reshape(75, 75)  # resized to the image
    assert np.array_equal(overlay(image, heat, alpha=0.0), image)
    full = overlay(image, heat, alpha=1.0, colormap="gray")
    assert full.shape == image.shape and full[0, 0].max() < 5 and full[-1, -1].min() > 250
