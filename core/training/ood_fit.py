"""Fitting a run's out-of-distribution check (core.model.ood) on its own images.

The score is fitted on the pooled features of the run's training images through the
run's final model (features of the backbone before fine-tuning would not be those the
model computes), and its threshold is set on the run's validation images; Testing is
never used. Training calls this once the kept model is saved; `python -m core evaluate
RUN` calls it for a run trained before the check existed. The training side is a
stratified, seeded subsample of at most MAX_TRAIN_IMAGES: a forward pass over 5,400
images costs minutes on a CPU, and 1,000 fit a shrunk covariance well. A cached run
computes the features from its stored activations (only the blocks above the cut run);
the others from the images.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from core.config import framing_of
from core.data.dataset import DatasetIndex, Sample
from core.data.pipeline import SkippedFiles, make_dataset
from core.errors import PipelineError
from core.model.ood import OODCheck, fit_check, save_check
from core.registry import Run

MAX_TRAIN_IMAGES = 1000
# (model, samples) -> (pooled features, labels) of the readable ones, or None.
FeatureSource = Callable[[keras.Model, list[Sample]], tuple[np.ndarray, np.ndarray] | None]


def image_features(
    model: keras.Model,
    samples: list[Sample],
    image_size: int,
    num_classes: int,
    framing: str,
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features ("avg_pool") and labels of the readable samples, from the images."""
    skipped = SkippedFiles()
    data = make_dataset(samples, num_classes, image_size, batch_size, skipped, framing=framing)
    pooled = keras.Model(model.inputs, model.get_layer("avg_pool").output)
    features = pooled.predict(data, verbose=0)
    bad = skipped.as_dict()
    labels = np.array([s.label for s in samples if str(s.path) not in bad], dtype=int)
    return np.asarray(features, dtype=np.float32), labels


def stratified_subsample(samples: list[Sample], limit: int, seed: int) -> list[Sample]:
    """At most `limit` samples, each class keeping its share, drawn with `seed`."""
    if len(samples) <= limit:
        return list(samples)
    rng = np.random.default_rng(seed)
    labels = np.array([s.label for s in samples])
    chosen: list[int] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        take = max(1, round(limit * len(members) / len(samples)))
        chosen += rng.choice(members, size=min(take, len(members)), replace=False).tolist()
    return [samples[i] for i in sorted(chosen)]


def run_samples(run: Run, index: DatasetIndex) -> tuple[list[Sample], list[Sample]]:
    """The run's training and validation images, as its data.json lists them."""
    files = (run.read("data.json") or {}).get("files", {})

    def samples(group: str) -> list[Sample]:
        return [
            Sample(index.root / f, index.classes.index(Path(f).parts[1]))
            for f in files.get(group) or []
            if (index.root / f).is_file() and Path(f).parts[1] in index.classes
        ]

    return samples("train"), samples("validation")


def run_features(
    run: Run,
    index: DatasetIndex,
    model: keras.Model,
    train: list[Sample] | None = None,
    validation: list[Sample] | None = None,
    features: FeatureSource | None = None,
    max_train: int = MAX_TRAIN_IMAGES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(training features, their labels, validation features, what ood.json records
    about them). `train` and `validation` default to the run's own (data.json);
    `features`: a cheaper way to the pooled features than the images (the activation
    cache), or None."""
    if run.config.get("kind") == "ensemble":
        raise PipelineError("an ensemble uses its first member's check: evaluate that run instead")
    if train is None or validation is None:
        train, validation = run_samples(run, index)
    if not train or not validation:
        raise PipelineError(f"run {run.id} lists no training or no validation images in its data.json")
    seed = int(run.config.get("seed", 0))
    size, n = int(run.config["input_size"]), len(index.classes)
    kept = stratified_subsample(train, max_train, seed)
    cached = features(model, kept) if features else None
    if cached is not None:
        (x_train, y_train), (x_val, _) = cached, features(model, validation)
        source = "cached activations"
    else:
        framing = framing_of(run.config)
        x_train, y_train = image_features(model, kept, size, n, framing)
        x_val, _ = image_features(model, validation, size, n, framing)
        source = "images"
    subsample = f"stratified by class, seed {seed}" if len(kept) < len(train) else None
    return x_train, y_train, x_val, {"source": source, "train_of": len(train), "subsample": subsample}


def fit_run(
    run: Run,
    index: DatasetIndex,
    model: keras.Model,
    train: list[Sample] | None = None,
    validation: list[Sample] | None = None,
    features: FeatureSource | None = None,
    max_train: int = MAX_TRAIN_IMAGES,
    save: bool = True,
) -> OODCheck:
    """Fit the check of `run` on run_features' answer (saved as ood.npz and ood.json
    unless `save` is False)."""
    x_train, y_train, x_val, info = run_features(run, index, model, train, validation, features, max_train)
    check = fit_check(x_train, y_train, x_val, **info)
    if save:
        save_check(run, check)
    return check
