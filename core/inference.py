"""Classifying scans with a saved run: load once, predict many (core.batch for files)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from core.errors import PipelineError
from core.images import load_rgb
from core.model import load_model
from core.registry import Run
from core.tta import View, tta_probabilities


@dataclass
class Prediction:
    name: str
    probabilities: dict[str, float] | None = None
    error: str | None = None
    source: int | None = None  # position of the file in the batch it came from
    frame: int = 0  # slice of a multi-frame file

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
            "error": self.error,
        }


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
        self._forward = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)
        # Temperature fitted on the run's validation set (1.0: uncalibrated).
        self.temperature = float((run.read("calibration.json") or {}).get("temperature", 1.0))

    def prepare(self, source: Path | bytes) -> np.ndarray:
        """The uint8 (size, size, 3) image the model sees; raises ImageDecodeError."""
        return load_rgb(source, self.input_size)

    def probabilities(
        self,
        images: np.ndarray,
        batch_size: int = 32,
        calibrated: bool = False,
        tta: Sequence[View] = (),
    ) -> np.ndarray:
        """Softmax for a batch of uint8 images in [0, 255]; with `calibrated`, after the
        run's temperature scaling; with `tta` views, averaged over those views."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if tta:
            probs = tta_probabilities(lambda x: self._predict(x, batch_size), images, tta)
        else:
            probs = self._predict(images, batch_size)
        if calibrated and self.temperature != 1.0:
            from core.interpret import apply_temperature

            probs = apply_temperature(probs, self.temperature)
        return probs

    def _predict(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        parts = [
            self._forward(tf.constant(images[i : i + batch_size])).numpy()
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.classes)))
