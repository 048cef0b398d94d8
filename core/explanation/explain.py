"""Saliency maps (Grad-CAM, Grad-CAM++, Score-CAM) and overlays.

Grad-CAM++ and Score-CAM come from tf-keras-vis, which clones the model when a
visualiser is built, so each one is built once per model and reused for every image. It
needs the flat functional graph that core.model.network builds; the target layer is the
backbone's last block, mixed10. Grad-CAM itself is computed in closed form for our
head (PooledGradcam), the same map in a fraction of the time.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from core.model.network import LAST_CONV, ensemble_members

METHODS = ("Grad-CAM", "Grad-CAM++", "Score-CAM")


class PooledGradcam:
    """Grad-CAM in closed form for the classifier's head (global average pooling, then a
    dense layer), the same maps as tf-keras-vis' Gradcam with ReplaceToLinear.

    The logit of class c is W[:, c] . mean_ij(A_ij) + b, so its gradient with respect to
    the last block's activations A is W[:, c] / (h * w) at every position: Grad-CAM's
    channel weights are known without a backward pass. One compiled forward pass to the
    last block replaces tf-keras-vis' eager forward and backward pass, which is what
    brings a map under the 0.5 s budget on a CPU (bench/inference_bench.py).
    """

    def __init__(self, model) -> None:
        features = keras.Model(model.inputs, model.get_layer(LAST_CONV).output)
        self._features = tf.function(lambda x: features(x, training=False), reduce_retracing=True)
        self._kernel = model.get_layer("predictions").kernel.numpy()

    @staticmethod
    def applies_to(model) -> bool:
        names = [layer.name for layer in model.layers]
        return "avg_pool" in names and "predictions" in names and LAST_CONV in names

    def __call__(
        self, image: np.ndarray, class_index: int, activations: np.ndarray | None = None
    ) -> np.ndarray:
        """The map of `image`; `activations`: its last block's (h, w, channels), when the
        prediction's forward pass has them already (core.serving.inference.Classifier.outputs)."""
        from scipy.ndimage import zoom

        if activations is None:
            batch = tf.constant(np.asarray(image, dtype=np.float32)[None])
            activations = self._features(batch).numpy()[0]  # (h, w, channels)
        height, width = activations.shape[:2]
        cam = np.maximum(activations @ self._kernel[:, class_index] / (height * width), 0.0)
        cam = zoom(cam, (image.shape[0] / height, image.shape[1] / width), order=1)
        return ((cam - cam.min()) / (cam.max() - cam.min() + 1e-7)).astype(np.float32)


class Explainer:
    """Saliency maps of one model, or of every member of an ensemble (averaged with the
    ensemble's weights, or one by one)."""

    def __init__(self, model, score_cam_channels: int = 64, fast_gradcam: bool = True) -> None:
        self.model = model
        self.members = ensemble_members(model) or [("model", model, 1.0)]
        # Grad-CAM through PooledGradcam when every member has the standard head.
        self.fast_gradcam = fast_gradcam and all(PooledGradcam.applies_to(m) for _, m, _ in self.members)
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
        self,
        image: np.ndarray,
        class_index: int,
        method: str = "Grad-CAM",
        member: int = 0,
        activations: np.ndarray | None = None,
    ) -> np.ndarray:
        """One member's map in [0, 1] with the image's height and width; `activations`:
        this member's last block's for `image`, if known (closed-form Grad-CAM uses them)."""
        from tf_keras_vis.utils.scores import CategoricalScore

        batch = np.asarray(image, dtype=np.float32)[None]
        kwargs = {"penultimate_layer": LAST_CONV, "seek_penultimate_conv_layer": False}
        if method == "Score-CAM":
            kwargs["max_N"] = self.score_cam_channels
        if method == "Grad-CAM" and self.fast_gradcam:
            return self._pooled(member)(image, class_index, activations).clip(0.0, 1.0)
        cam = self._visualiser(member, method)(CategoricalScore([class_index]), batch, **kwargs)
        return np.nan_to_num(np.asarray(cam[0], dtype=np.float32)).clip(0.0, 1.0)

    def _pooled(self, member: int) -> PooledGradcam:
        if (member, "pooled") not in self._visualisers:
            self._visualisers[member, "pooled"] = PooledGradcam(self.members[member][1])
        return self._visualisers[member, "pooled"]

    def heatmap(
        self,
        image: np.ndarray,
        class_index: int,
        method: str = "Grad-CAM",
        activations: np.ndarray | None = None,
    ) -> np.ndarray:
        """Map in [0, 1] with the image's height and width, for one uint8 RGB image
        (an ensemble's: the members' maps averaged with its weights). `activations`: the
        image's last block's from the prediction's pass; a single model's map then needs
        no forward pass of its own (an ensemble's members each run theirs)."""
        if activations is not None and not self.is_ensemble:
            return self.member_heatmap(image, class_index, method, 0, activations)
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
