"""Saliency maps (Grad-CAM, Grad-CAM++, Score-CAM) with tf-keras-vis, and overlays.

tf-keras-vis clones the model when a visualiser is built, so each one is built once per
model and reused for every image. It needs the flat functional graph that
core.model builds; the target layer is the backbone's last block, mixed10.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from core.model import LAST_CONV, ensemble_members

METHODS = ("Grad-CAM", "Grad-CAM++", "Score-CAM")


class Explainer:
    """Saliency maps of one model, or of every member of an ensemble (averaged with the
    ensemble's weights, or one by one)."""

    def __init__(self, model, score_cam_channels: int = 64) -> None:
        self.model = model
        self.members = ensemble_members(model) or [("model", model, 1.0)]
        self.score_cam_channels = score_cam_channels  # Score-CAM costs one forward per channel
        self._visualisers: dict[tuple[int, str], object] = {}

    @property
    def is_ensemble(self) -> bool:
        return len(self.members) > 1

    def _visualiser(self, member: int, method: str):
        if (member, method) not in self._visualisers:
            from tf_keras_vis.gradcam import Gradcam
            from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
            from tf_keras_vis.scorecam import Scorecam
            from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

            kinds = {"Grad-CAM": Gradcam, "Grad-CAM++": GradcamPlusPlus, "Score-CAM": Scorecam}
            if method not in kinds:
                raise ValueError(f"unknown saliency method {method!r}; choose from {METHODS}")
            self._visualisers[member, method] = kinds[method](
                self.members[member][1], model_modifier=ReplaceToLinear(), clone=True
            )
        return self._visualisers[member, method]

    def member_heatmap(
        self, image: np.ndarray, class_index: int, method: str = "Grad-CAM", member: int = 0
    ) -> np.ndarray:
        """One member's map in [0, 1] with the image's height and width."""
        from tf_keras_vis.utils.scores import CategoricalScore

        batch = np.asarray(image, dtype=np.float32)[None]
        kwargs = {"penultimate_layer": LAST_CONV, "seek_penultimate_conv_layer": False}
        if method == "Score-CAM":
            kwargs["max_N"] = self.score_cam_channels
        cam = self._visualiser(member, method)(CategoricalScore([class_index]), batch, **kwargs)
        return np.nan_to_num(np.asarray(cam[0], dtype=np.float32)).clip(0.0, 1.0)

    def heatmap(self, image: np.ndarray, class_index: int, method: str = "Grad-CAM") -> np.ndarray:
        """Map in [0, 1] with the image's height and width, for one uint8 RGB image
        (an ensemble's: the members' maps averaged with its weights)."""
        total = sum(weight for _, _, weight in self.members)
        return (
            sum(
                weight * self.member_heatmap(image, class_index, method, i)
                for i, (_, _, weight) in enumerate(self.members)
            )
            / total
        )


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """Blend a colour-mapped heatmap onto a uint8 RGB image."""
    from matplotlib import colormaps

    if heatmap.shape != image.shape[:2]:
        heatmap = np.asarray(
            Image.fromarray(heatmap.astype(np.float32), mode="F").resize(
                (image.shape[1], image.shape[0]), Image.Resampling.BILINEAR
            )
        )
    colours = colormaps[colormap](heatmap.clip(0, 1))[..., :3] * 255.0
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours
    return blended.clip(0, 255).astype(np.uint8)
