"""Saliency maps: the closed-form Grad-CAM against tf-keras-vis, every method against a
hand-made model whose evidence sits in known corners, overlays."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from core.explanation.explain import METHODS, Explainer, PooledGradcam, overlay
from core.model.network import LAST_CONV


@pytest.fixture(scope="module")
def model(saliency_model):
    return saliency_model


@pytest.fixture(scope="module")
def image(saliency_image):
    return saliency_image


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
def test_every_method_gives_a_normalised_map_on_the_classifier(model, image, method):
    heat = Explainer(model, score_cam_channels=8).heatmap(image, 1, method)
    assert heat.shape == (150, 150) and heat.dtype == np.float32
    assert heat.min() < 0.01 and heat.max() > 0.99  # spans [0, 1]: neither flat nor empty


CORNER_SIZE = 64
QUADRANTS = {
    "top-left": (slice(0, 32), slice(0, 32)),
    "top-right": (slice(0, 32), slice(32, 64)),
    "bottom-left": (slice(32, 64), slice(0, 32)),
    "bottom-right": (slice(32, 64), slice(32, 64)),
}
# The horizontal neighbour: with a diagonal one a transposed map would still pass.
NEIGHBOUR = {
    "top-left": "top-right",
    "top-right": "top-left",
    "bottom-left": "bottom-right",
    "bottom-right": "bottom-left",
}


@pytest.fixture(scope="module")
def corner_model():
    """A model whose evidence is known: one 1x1 convolution detects white pixels (channel
    0) and red ones (channel 1), both equally strongly; an 8x8 grid named like the
    backbone's last block pools them; class 0 ("white") counts white minus red, class 1
    ("red") the reverse. Grey pixels excite neither detector."""
    inputs = keras.Input((CORNER_SIZE, CORNER_SIZE, 3), name="image")
    detectors = keras.layers.Conv2D(2, 1, activation="relu", name="detectors")
    grid = keras.layers.AveragePooling2D(8, name=LAST_CONV)(
        detectors(keras.layers.Rescaling(1 / 255)(inputs))
    )
    head = keras.layers.Dense(2, activation="softmax", name="predictions")
    model = keras.Model(inputs, head(keras.layers.GlobalAveragePooling2D(name="avg_pool")(grid)))
    white, red = [1 / 3, 1 / 3, 1 / 3], [1.0, -1.0, -1.0]  # each gives 0.5 on its colour
    detectors.set_weights([np.array([white, red], np.float32).T[None, None], np.full(2, -0.5, np.float32)])
    head.set_weights([np.array([[100, -100], [-100, 100]], np.float32), np.zeros(2, np.float32)])
    return model


def corner_image(white: str, red: str) -> np.ndarray:
    """Grey, with a white square in the `white` corner and a red one in the `red` corner."""
    image = np.full((CORNER_SIZE, CORNER_SIZE, 3), 120, np.uint8)
    for corner, colour in ((white, (255, 255, 255)), (red, (255, 0, 0))):
        rows, cols = QUADRANTS[corner]
        image[rows.start + 2 : rows.start + 18, cols.start + 2 : cols.start + 18] = colour
    return image


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("corner", list(QUADRANTS))
def test_every_method_finds_each_class_evidence_in_its_corner(corner_model, method, corner):
    image = corner_image(white=corner, red=NEIGHBOUR[corner])
    explainer = Explainer(corner_model, score_cam_channels=2)
    for class_index, evidence in ((0, corner), (1, NEIGHBOUR[corner])):
        heat = explainer.heatmap(image, class_index, method)
        assert heat.shape == image.shape[:2]
        quadrant = heat[QUADRANTS[evidence]]
        assert quadrant.max() == heat.max(), (class_index, "the peak lies elsewhere")
        assert quadrant.sum() > 0.75 * heat.sum(), (class_index, "most of the map lies elsewhere")


def test_overlay_blends_the_map_onto_the_image(image):
    heat = np.linspace(0, 1, 75 * 75, dtype=np.float32).reshape(75, 75)  # resized to the image
    assert np.array_equal(overlay(image, heat, alpha=0.0), image)
    full = overlay(image, heat, alpha=1.0, colormap="gray")
    assert full.shape == image.shape and full[0, 0].max() < 5 and full[-1, -1].min() > 250
