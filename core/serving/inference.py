"""Classifying scans with a saved run: load once, predict many (core.serving.batch for files).

One compiled forward pass gives the probabilities, the pooled features that the run's
out-of-distribution check scores (core.model.ood) and the last block's activations that
closed-form Grad-CAM needs (core.explanation.explain.PooledGradcam), so a scan with its score and
its map costs about one bare prediction (bench/ood_bench.py measures it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from core.calibration import apply_temperature
from core.config import framing_of
from core.data.images import load_rgb
from core.errors import PipelineError
from core.model.network import LAST_CONV, WEIGHT, ensemble_members, load_model
from core.model.ood import OODCheck, load_check, unavailable_note
from core.model.tta import View, mean_over_views, stack_views
from core.registry import Run


@dataclass
class Prediction:
    name: str
    probabilities: dict[str, float] | None = None
    error: str | None = None
    source: int | None = None  # position of the file in the batch it came from
    frame: int = 0  # slice of a multi-frame file
    ood_score: float | None = None  # None: the run has no fitted out-of-distribution check
    unusual: bool | None = None  # the score is above the run's threshold

    @property
    def label(self) -> str | None:
        if not self.probabilities:
            return None
        return max(self.probabilities, key=self.probabilities.get)

    @property
    def confidence(self) -> float | None:
        return None if not self.probabilities else max(self.probabilities.values())

    def to_dict(self) -> dict:
        return {
            "file": self.name,
            "label": self.label,
            "confidence": self.confidence,
            "probabilities": self.probabilities,
            "ood_score": self.ood_score,
            "unusual": self.unusual,
            "error": self.error,
        }


@dataclass
class Outputs:
    """What the forward pass gives for a batch (with TTA: the mean over the views)."""

    probabilities: np.ndarray  # (n, classes)
    features: np.ndarray  # (n, features) pooled ("avg_pool"); an ensemble's first member's
    ood_scores: np.ndarray | None  # (n,); None without a fitted check
    unusual: np.ndarray | None  # (n,) bool; None without a fitted check
    activations: np.ndarray | None = None  # (n, h, w, channels) of the last block, when asked


def forward_model(model: keras.Model) -> keras.Model:
    """[probabilities, pooled features, last block's activations] of one pass. An
    ensemble is rebuilt from its own layers with its first member's features and maps
    as the extra outputs: the same weights, still one pass."""
    members = ensemble_members(model)
    first = members[0][1] if members else model
    taps = [first.output, first.get_layer("avg_pool").output, first.get_layer(LAST_CONV).output]
    if not members:
        return keras.Model(model.inputs, taps)
    inputs = keras.Input(model.input_shape[1:], name="image")
    probabilities, pooled, maps = keras.Model(first.inputs, taps)(inputs)
    scaled = [model.get_layer(WEIGHT.format(0))(probabilities)]
    scaled += [model.get_layer(WEIGHT.format(i))(m(inputs)) for i, (_, m, _) in enumerate(members) if i]
    return keras.Model(inputs, [model.get_layer("ensemble_mean")(scaled), pooled, maps])


class Classifier:
    """A run's model, loaded once (safe mode), with a compiled forward pass."""

    def __init__(self, run: Run) -> None:
        if not run.model_path.is_file():
            raise PipelineError(f"run {run.id} has no saved model (state: {run.state})")
        try:
            self.model = load_model(run.model_path)
        except Exception as exc:
            raise PipelineError(f"the model of run {run.id} cannot be loaded safely: {exc}") from None
        self.run = run
        self.classes: list[str] = run.classes
        self.input_size = int(run.config["input_size"])
        self.framing = framing_of(run.config)
        network = forward_model(self.model)
        # One trace for every batch size, made here: the first scan of the first session
        # then costs a forward pass, not a trace, and concurrent sessions never retrace.
        signature = [tf.TensorSpec((None, self.input_size, self.input_size, 3), tf.float32)]
        self._forward = tf.function(lambda x: network(x, training=False), input_signature=signature)
        self._forward.get_concrete_function()
        # Temperature fitted on the run's validation set (1.0: uncalibrated).
        self.temperature = float((run.read("calibration.json") or {}).get("temperature", 1.0))
        self.ood, self.ood_note = self._ood_check(run, int(network.outputs[1].shape[-1]))

    @staticmethod
    def _ood_check(run: Run, n_features: int) -> tuple[OODCheck | None, str]:
        """The run's fitted check, or None and why not. An ensemble uses its first
        member's check, which matches the first member's features it is given."""
        source = run
        if run.config.get("kind") == "ensemble":
            source = Run(run.path.parent / run.config["members"][0])
        check = load_check(source)
        if check is None or check.n_features != n_features:
            return None, unavailable_note(source.id)
        note = f"scored with its first member's features and check (run {source.id})" if source != run else ""
        return check, note

    def prepare(self, source: Path | bytes) -> np.ndarray:
        """The uint8 (size, size, 3) image the model sees; raises ImageDecodeError."""
        return load_rgb(source, self.input_size, self.framing)

    def probabilities(
        self,
        images: np.ndarray,
        batch_size: int = 32,
        calibrated: bool = False,
        tta: Sequence[View] = (),
    ) -> np.ndarray:
        """Softmax for a batch of uint8 images in [0, 255]; with `calibrated`, after the
        run's temperature scaling; with `tta` views, averaged over those views."""
        return self.outputs(images, batch_size, calibrated, tta).probabilities

    def outputs(
        self,
        images: np.ndarray,
        batch_size: int = 32,
        calibrated: bool = False,
        tta: Sequence[View] = (),
        activations: bool = False,
    ) -> Outputs:
        """Probabilities (as `probabilities` gives them), pooled features and
        out-of-distribution scores of a batch, from one pass; with `activations`, the
        last block's too (of the image itself: not with `tta`). With `tta`, the score is
        the mean of the views' scores, each against the same threshold as a plain scan:
        the views are ones the training augmentation makes, so they stay in distribution."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if tta and activations:
            raise ValueError("activations are those of the image itself: ask without tta")
        stacked = stack_views(images, tta) if tta else images
        probs, features, maps = self._predict(stacked, batch_size, activations)
        scores = self.ood.score(features) if self.ood is not None else None
        if tta:
            probs, features = mean_over_views(probs, len(tta)), mean_over_views(features, len(tta))
            scores = None if scores is None else mean_over_views(scores, len(tta))
        if calibrated and self.temperature != 1.0:
            probs = apply_temperature(probs, self.temperature)
        unusual = None if scores is None else self.ood.unusual(scores)
        return Outputs(probs, features, scores, unusual, maps)

    def _predict(
        self, images: np.ndarray, batch_size: int, activations: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        images = np.asarray(images, dtype=np.float32)
        probs, features, maps = [], [], []
        for i in range(0, len(images), batch_size):
            p, f, m = self._forward(tf.constant(images[i : i + batch_size]))
            probs.append(p.numpy())
            features.append(f.numpy())
            if activations:  # copied out only when asked for
                maps.append(m.numpy())
        if not probs:
            return np.zeros((0, len(self.classes))), np.zeros((0, 0)), None
        joined = np.concatenate(maps) if activations else None
        return np.concatenate(probs), np.concatenate(features), joined
