"""Test-time augmentation: average the softmax over a few geometric views of a scan.

Each view is a flip, a small rotation and/or a zoom that the training augmentation
also produces, so the model has seen such images. A saliency map computed on a view is
mapped back to the original geometry with the inverse transform; pixels a view does
not cover (corners after a rotation, the rim after a zoom) are left out of its average.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from core.errors import ConfigError


@dataclass(frozen=True)
class View:
    name: str
    flip: bool = False  # left-right mirror (axial slices are roughly symmetric)
    angle: float = 0.0  # degrees, counter-clockwise
    zoom: float = 1.0  # > 1 crops the centre and enlarges it

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The view of a uint8 (H, W, 3) image, same shape."""
        picture = Image.fromarray(np.asarray(image, dtype=np.uint8))
        if self.flip:
            picture = ImageOps.mirror(picture)
        if self.angle:
            picture = picture.rotate(self.angle, Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
        if self.zoom != 1.0:
            box = self._crop_box(picture.size)
            picture = picture.resize(picture.size, Image.Resampling.BILINEAR, box=box)
        return np.asarray(picture, dtype=np.uint8)

    def invert(self, heatmap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A map computed on this view, in the original image's geometry, with the mask
        (1 where the view saw the original, 0 elsewhere)."""
        height, width = heatmap.shape
        values = Image.fromarray(np.asarray(heatmap, dtype=np.float32), mode="F")
        mask = Image.fromarray(np.ones((height, width), dtype=np.float32), mode="F")
        if self.zoom != 1.0:
            left, top, right, bottom = (round(v) for v in self._crop_box((width, height)))
            box = (left, top, right, bottom)
            values = _paste(values, box, Image.Resampling.BILINEAR)
            mask = _paste(mask, box, Image.Resampling.NEAREST)
        if self.angle:
            values = values.rotate(-self.angle, Image.Resampling.BILINEAR)
            mask = mask.rotate(-self.angle, Image.Resampling.NEAREST)
        if self.flip:
            values, mask = ImageOps.mirror(values), ImageOps.mirror(mask)
        return np.asarray(values, dtype=np.float32), (np.asarray(mask) > 0.5).astype(np.float32)

    def _crop_box(self, size: tuple[int, int]) -> tuple[float, float, float, float]:
        width, height = size
        w, h = width / self.zoom, height / self.zoom
        return ((width - w) / 2, (height - h) / 2, (width + w) / 2, (height + h) / 2)


def _paste(full: Image.Image, box: tuple[int, int, int, int], resample) -> Image.Image:
    """Shrink a full-size map into `box` of an empty map of the same size (undoes a zoom)."""
    left, top, right, bottom = box
    canvas = Image.new("F", full.size, 0.0)
    canvas.paste(full.resize((right - left, bottom - top), resample), (left, top))
    return canvas


VIEWS = {
    view.name: view
    for view in (
        View("original"),
        View("flip", flip=True),
        View("rotate+10", angle=10.0),
        View("rotate-10", angle=-10.0),
        View("zoom1.1", zoom=1.1),
        View("flip+zoom1.1", flip=True, zoom=1.1),
    )
}
DEFAULT_VIEWS = ("original", "flip", "rotate+10", "rotate-10")


def views(names: Sequence[str] = DEFAULT_VIEWS) -> list[View]:
    unknown = [n for n in names if n not in VIEWS]
    if unknown or not names:
        raise ConfigError(f"unknown or no TTA views {unknown}; choose from {', '.join(VIEWS)}")
    return [VIEWS[n] for n in names]


def stack_views(images: np.ndarray, chosen: Sequence[View]) -> np.ndarray:
    """Every view of every image, view-major: (views * n, H, W, 3)."""
    images = np.asarray(images, dtype=np.uint8)
    if images.ndim == 3:
        images = images[None]
    return np.stack([view.apply(image) for view in chosen for image in images])


def mean_over_views(values: np.ndarray, n_views: int) -> np.ndarray:
    """Per-image mean of per-view values laid out as stack_views lays out the views."""
    values = np.asarray(values, dtype=np.float64)
    return values.reshape(n_views, len(values) // n_views, *values.shape[1:]).mean(axis=0)


def tta_probabilities(
    predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray, chosen: Sequence[View]
) -> np.ndarray:
    """Mean softmax over the views of each image; `predict` maps (n, H, W, 3) to (n, C)."""
    return mean_over_views(predict(stack_views(images, chosen)), len(chosen))


def tta_heatmap(
    heatmap: Callable[[np.ndarray], np.ndarray], image: np.ndarray, chosen: Sequence[View]
) -> np.ndarray:
    """The views' maps mapped back and averaged where each view covers the pixel."""
    total = np.zeros(image.shape[:2], dtype=np.float32)
    coverage = np.zeros(image.shape[:2], dtype=np.float32)
    for view in chosen:
        values, mask = view.invert(heatmap(view.apply(image)))
        total += values * mask
        coverage += mask
    return np.divide(total, coverage, out=np.zeros_like(total), where=coverage > 0)
