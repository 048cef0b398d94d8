"""Saliency sanity check: the same map on copies of the model whose learned weights are
re-initialised from the top down (Adebayo et al. 2018, "Sanity checks for saliency maps",
cascading model-parameter randomisation).

A map that shows what the model learned changes when those weights are destroyed; a map
that barely changes shows the image rather than the model. The
cascade first re-initialises the dense head, then the head and the backbone's last block
(mixed10), then also mixed9, and so on. Each layer gets its own initialiser again, seeded
from the check's seed and the layer's name, so a layer draws the same weights at every step
and every run. The real model is never modified: each step is a clone.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import keras
import numpy as np
from scipy.stats import spearmanr

from core.config import BLOCKS
from core.explanation.explain import Explainer
from core.model.network import build_ensemble, ensemble_members

HEAD = "head"  # the dense layer "predictions"
MAX_DEPTH = len(BLOCKS) - 1  # mixed0's block has no block below to start from


@dataclass(frozen=True)
class RandomisedMap:
    """One step of the cascade: what was re-initialised, its map, and how closely the map
    ranks the pixels as the real map does (Spearman; nan when either map is flat)."""

    randomised: str
    heatmap: np.ndarray
    spearman: float


@dataclass(frozen=True)
class SanityResult:
    method: str
    real: np.ndarray
    steps: list[RandomisedMap]


def cascade(depth: int) -> list[list[str]]:
    """The groups re-initialised at each step, cumulative: the head, then the head and
    mixed10, ... down `depth` blocks."""
    if not 0 <= depth <= MAX_DEPTH:
        raise ValueError(f"the cascade goes down 0 to {MAX_DEPTH} blocks, not {depth}")
    groups = [HEAD, *reversed(BLOCKS[-depth:])] if depth else [HEAD]
    return [groups[: k + 1] for k in range(len(groups))]


def step_name(groups: list[str]) -> str:
    return " + ".join(groups)


def group_layers(model: keras.Model, group: str) -> list[keras.layers.Layer]:
    """The layers of the head ("predictions") or of one backbone block: those after the
    block below's output up to the block's own output."""
    if group == HEAD:
        return [model.get_layer("predictions")]
    names = [layer.name for layer in model.layers]
    below = BLOCKS[BLOCKS.index(group) - 1]
    if group not in names or below not in names:
        raise ValueError(f"the model has no InceptionV3 block {group} to randomise")
    return model.layers[names.index(below) + 1 : names.index(group) + 1]


def reinitialise(layer: keras.layers.Layer, seed: int) -> None:
    """Draw each of the layer's weights again from the layer's own initialiser
    (kernel_initializer for "kernel", moving_variance_initializer for "moving_variance")."""
    for n, variable in enumerate(layer.weights):
        initializer = getattr(layer, f"{variable.name}_initializer")
        config = initializer.get_config()
        if "seed" in config:  # a random initialiser: seeded per layer and variable
            layer_seed = zlib.crc32(f"{seed}/{layer.name}/{n}".encode()) % 2**31
            initializer = type(initializer).from_config(config | {"seed": layer_seed})
        variable.assign(initializer(variable.shape, variable.dtype))


def randomised_copy(model: keras.Model, groups: list[str], seed: int) -> keras.Model:
    """A copy of `model` (or of each member of an ensemble) with `groups` re-initialised."""
    members = ensemble_members(model)
    if members:
        copies = [randomised_copy(member, groups, seed + i) for i, (_, member, _) in enumerate(members)]
        return build_ensemble(copies, [weight for _, _, weight in members])
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for group in groups:
        for layer in group_layers(copy, group):
            reinitialise(layer, seed)
    return copy


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps' pixels; nan when either map is flat (a
    constant has no ranking)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a.ravel(), b.ravel()).statistic)


class Cascade:
    """The randomised copies of one explainer's model, built on first use and kept, so
    that every further image costs only the maps themselves."""

    def __init__(self, explainer: Explainer, depth: int = 2, seed: int = 0) -> None:
        self.explainer = explainer
        self.steps = cascade(depth)
        self.seed = seed
        self._explainers: dict[int, Explainer] = {}

    def explainer_at(self, k: int) -> Explainer:
        """The explainer of step k's randomised copy."""
        if k not in self._explainers:
            real = self.explainer
            copy = randomised_copy(real.model, self.steps[k], self.seed)
            self._explainers[k] = Explainer(copy, real.score_cam_channels, real.fast_gradcam)
        return self._explainers[k]

    def check(self, image: np.ndarray, class_index: int, method: str = "Grad-CAM") -> SanityResult:
        """The real map of `image` for `class_index` and the map at each step of the cascade."""
        real = self.explainer.heatmap(image, class_index, method)
        steps = []
        for k, groups in enumerate(self.steps):
            heat = self.explainer_at(k).heatmap(image, class_index, method)
            steps.append(RandomisedMap(step_name(groups), heat, rank_correlation(real, heat)))
        return SanityResult(method, real, steps)


def sanity_check(
    model: keras.Model,
    image: np.ndarray,
    class_index: int,
    method: str = "Grad-CAM",
    depth: int = 2,
    seed: int = 0,
) -> SanityResult:
    """The cascading randomisation check of one image's map (Cascade, used once)."""
    return Cascade(Explainer(model), depth, seed).check(image, class_index, method)
