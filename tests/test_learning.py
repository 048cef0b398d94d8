"""Training learns: a tiny real run on the generated images scores far above chance.

The run goes through prepare_run and train_run like any other and is scored on the
dataset's Testing images, which it never sees. Its backbone is InceptionV3 with random
weights, as in the other tests, except that each batch norm layer's statistics are those
of the generated Training images (one forward pass), saved as a weights file that the
run loads like a pretrained one. With the statistics of a fresh layer (mean 0, variance
1) the activations shrink block after block, so the head sees near-constant features,
and batch norm that trains keeps statistics that lag far behind its batches in a few
hundred steps: such runs stay at chance. Batch norm therefore stays frozen while the
head and the top two blocks train, on the cached activations below them.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from datagen import make_dataset

from core.config import TrainConfig
from core.data.images import load_rgb
from core.registry import Registry
from core.training.train import prepare_run, train_run

SIZE = 75  # InceptionV3's smallest input
# The generated classes differ partly in how bright their marks are against the head, a
# cue that head framing's brightness stretch evens out; padding keeps this test about
# learning, not about framing (tests/test_images.py covers that).
FRAMING = "pad"


def calibrated_weights(images: list[Path], path: Path, seed: int) -> Path:
    """Random InceptionV3 weights whose batch norm statistics are those of `images`."""
    keras.utils.set_random_seed(seed)
    backbone = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    pixels = np.stack([load_rgb(image, SIZE, FRAMING) for image in images]).astype(np.float32)
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0  # the moving statistics become this one batch's
    backbone(keras.applications.inception_v3.preprocess_input(pixels), training=True)
    backbone.save_weights(path)
    return path


def test_a_tiny_training_beats_chance_on_held_out_images(tmp_path):
    seed = 0
    data = make_dataset(tmp_path / "mri", train_per_class=40, test_per_class=10, seed=seed, awkward=False)
    weights = calibrated_weights(
        sorted((data / "Training").rglob("*.jpg")), tmp_path / "init.weights.h5", seed
    )
    config = TrainConfig(
        data_dir=str(data),
        weights=str(weights),
        input_size=SIZE,
        framing=FRAMING,
        batch_size=8,
        val_fraction=0.2,
        seed=seed,
        mode="cached",
        head_epochs=1,
        finetune_epochs=4,
        finetune_lr=1e-3,
        finetune_schedule="cosine",
        unfreeze_from="mixed9",
        train_batchnorm=False,
    )
    registry = Registry(tmp_path / "models")
    run = train_run(registry, prepare_run(registry, config, "learns"), verbose=0)
    assert run.state == "completed"
    metrics = run.metrics
    assert metrics["n"] == 40  # every Testing image scored
    # Chance is 0.25 (four balanced classes); the margin above 0.7 absorbs what the seed moves.
    assert metrics["accuracy"] >= 0.7, metrics["confusion_matrix"]
