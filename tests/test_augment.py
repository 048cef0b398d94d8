"""The scanner changes of core.model.augment: each changes training images the way its
name says, keeps a grayscale slice grayscale and in range, and leaves inference alone."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from core.config import AugmentConfig, TrainConfig
from core.model.augment import (
    RandomBiasField,
    RandomGamma,
    RandomJpeg,
    RandomResolution,
    RicianNoise,
    build_augmenter,
    jpeg_round_trip,
    scanner_layers,
)

SCANNER = {"resolution": 32, "blur": 1.0, "bias_field": 0.3, "gamma": 0.4, "noise": 0.05, "jpeg": 20}
OFF = {"rotation": 0.0, "zoom": 0.0, "horizontal_flip": False, "contrast": 0.0, "brightness": 0.0}


def slices(n: int = 8, size: int = 64) -> np.ndarray:
    """Grayscale 'slices' in RGB: a bright disc with a fine checkerboard texture."""
    yy, xx = np.mgrid[:size, :size]
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2) * 150.0
    texture = ((yy // 2 + xx // 2) % 2) * 60.0
    gray = np.clip(disc + texture + 20.0, 0, 255).astype(np.float32)
    return np.repeat(np.repeat(gray[None, :, :, None], 3, axis=3), n, axis=0)


@pytest.mark.parametrize("name", list(SCANNER))
def test_each_scanner_change_alters_training_images_only(name):
    config = AugmentConfig(**OFF, **{name: SCANNER[name]})
    (layer,) = scanner_layers(config, seed=3)
    images = slices()
    changed = np.asarray(layer(images, training=True))
    assert changed.shape == images.shape and np.isfinite(changed).all()
    assert changed.min() >= 0 and changed.max() <= 255
    assert np.abs(changed - images).mean() > 0.5  # it does something
    assert np.abs(changed[..., 0] - changed[..., 2]).max() < 1e-3  # still grayscale
    np.testing.assert_array_equal(np.asarray(layer(images, training=False)), images)


def test_each_image_of_a_batch_gets_its_own_change():
    images = slices(16)
    layers = (
        RandomGamma(0.5, seed=1),
        RandomBiasField(0.3, seed=1),
        RicianNoise(0.05, seed=1),
        RandomJpeg(5, seed=1),
    )
    for layer in layers:
        changed = np.asarray(layer(images, training=True))
        assert len({round(float(c.mean()), 3) for c in changed}) > 8, layer.name


def test_resolution_removes_fine_detail_and_keeps_the_shape():
    images = slices(32)
    changed = np.asarray(RandomResolution(16, seed=0)(images, training=True))
    # The checkerboard has a 4-pixel period: shrinking towards 16 px blurs it away.
    detail = np.abs(np.diff(changed[..., 0], axis=2)).mean(axis=(1, 2))
    original = np.abs(np.diff(images[0, :, :, 0], axis=1)).mean()
    assert detail.max() <= original + 1e-3
    assert (detail < 0.5 * original).sum() >= 8  # the coarsest sizes are drawn too
    assert (np.abs(changed.mean(axis=(1, 2, 3)) - images.mean()) < 5).all()  # same brightness


def test_gamma_keeps_black_white_and_the_order_of_grey_levels():
    ramp = np.tile(np.linspace(0, 255, 64, dtype=np.float32)[None, :, None], (8, 1, 3))[None].repeat(6, 0)
    changed = np.asarray(RandomGamma(0.5, seed=2)(ramp, training=True))[..., 0]
    assert np.allclose(changed[:, :, 0], 0, atol=1e-3) and np.allclose(changed[:, :, -1], 255, atol=1e-2)
    assert (np.diff(changed, axis=2) >= -1e-3).all()


def test_bias_field_is_smooth_and_multiplicative():
    flat = np.full((6, 64, 64, 3), 100.0, np.float32)
    field = np.asarray(RandomBiasField(0.3, seed=4)(flat, training=True))[..., 0] / 100.0
    assert (np.abs(np.diff(field, axis=1)).max(axis=(1, 2)) < 0.05).all()  # smooth
    assert (field.max(axis=(1, 2)) - field.min(axis=(1, 2)) > 0.02).all()  # but not flat
    black = np.zeros_like(flat)
    np.testing.assert_array_equal(np.asarray(RandomBiasField(0.3, seed=4)(black, training=True)), black)


def test_rician_noise_lifts_black_background_as_magnitude_images_do():
    black = np.zeros((8, 64, 64, 3), np.float32)
    noisy = np.asarray(RicianNoise(0.05, seed=5)(black, training=True))[..., 0]
    assert (noisy >= 0).all() and noisy.mean() > 0.5
    assert noisy.std(axis=(1, 2)).max() < 0.05 * 255  # bounded by the level


def test_the_augmenter_runs_inside_a_tf_data_pipeline():
    config = AugmentConfig(**SCANNER)
    augmenter = build_augmenter(config, seed=7)
    dataset = tf.data.Dataset.from_tensor_slices(slices(8)).batch(4)
    dataset = dataset.map(lambda x: augmenter(x, training=True))
    batches = [b.numpy() for b in dataset]
    assert [b.shape for b in batches] == [(4, 64, 64, 3)] * 2
    assert np.abs(np.concatenate(batches) - slices(8)).mean() > 1


def test_scanner_changes_are_off_unless_asked_for():
    assert scanner_layers(TrainConfig(data_dir="x").augment, seed=0) == []
    assert len(scanner_layers(AugmentConfig(**SCANNER), seed=0)) == len(SCANNER)


def pil_jpeg(gray: np.ndarray, quality: int) -> np.ndarray:
    """A grayscale image saved by PIL (libjpeg) as a JPEG of `quality` and read back."""
    buffer = io.BytesIO()
    Image.fromarray(gray, "L").save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer), np.float32)


@pytest.mark.parametrize("quality", [10, 50, 90])
def test_jpeg_round_trip_matches_libjpeg(quality):
    # 67 px is not a multiple of the 8-px block, so the padding is exercised too.
    rng = np.random.default_rng(quality)
    yy, xx = np.mgrid[:67, :67]
    gray = ((yy - 30) ** 2 + (xx - 33) ** 2 < 400) * 120.0 + 1.5 * xx + rng.normal(0, 8, (67, 67)) + 20
    gray = np.clip(gray, 0, 255).astype(np.uint8)
    rgb = np.repeat(gray[None, :, :, None].astype(np.float32), 3, axis=3)
    ours = np.clip(np.asarray(jpeg_round_trip(rgb, np.array([quality], np.float32))), 0, 255)[0]
    reference = pil_jpeg(gray, quality)
    gap = np.abs(ours[..., 0] - reference).mean()
    assert np.abs(reference - gray).mean() > 2  # JPEG at this quality visibly changes the image...
    assert gap < 1.0  # ...and ours changes it as libjpeg does, to within a grey level on average,
    for other in (quality - 5, quality + 5):  # much closer than libjpeg at a nearby quality
        assert gap < 0.5 * np.abs(ours[..., 0] - pil_jpeg(gray, other)).mean()
    assert np.abs(ours[..., 0] - ours[..., 2]).max() < 1e-3


def test_lower_jpeg_quality_loses_more_detail():
    images = slices(8)
    worst = np.asarray(RandomJpeg(5, seed=0)(images, training=True))
    best = np.asarray(jpeg_round_trip(images, np.full(8, 95.0, np.float32)))
    assert np.abs(worst - images).mean() > 2 * np.abs(best - images).mean()
