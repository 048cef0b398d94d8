"""Training-time augmentation as Keras preprocessing layers.

Keras only (no TensorFlow import), so the same augmentation runs on any Keras backend:
bench/gpu_bench.py uses it on a GPU machine whose Python has JAX but no TensorFlow.
"""

from __future__ import annotations

import keras

from core.config import AugmentConfig


def build_augmenter(config: AugmentConfig, seed: int) -> keras.Sequential | None:
    """Keras preprocessing layers for training images, or None when switched off."""
    if not config.enabled:
        return None
    layers: list[keras.layers.Layer] = []
    if config.horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if config.rotation > 0:
        layers.append(keras.layers.RandomRotation(config.rotation, fill_mode="constant", seed=seed + 1))
    if config.zoom > 0:
        layers.append(keras.layers.RandomZoom(config.zoom, fill_mode="constant", seed=seed + 2))
    if config.contrast > 0:
        layers.append(keras.layers.RandomContrast(config.contrast, value_range=(0, 255), seed=seed + 3))
    if config.brightness > 0:
        layers.append(keras.layers.RandomBrightness(config.brightness, value_range=(0, 255), seed=seed + 4))
    return keras.Sequential(layers, name="augment") if layers else None
