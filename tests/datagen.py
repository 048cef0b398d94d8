"""Tiny synthetic "MRI" datasets for tests: class-dependent shapes, every awkward format.

Each class draws a grey ellipse (the head) plus its own mark, so a model can tell the
classes apart. Training also holds the awkward files the real dataset has: a PNG named
.jpg, grayscale, RGBA, palette and 16-bit images, and one corrupt file.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("glioma", "meningioma", "notumor", "pituitary")


def slice_image(label: int, rng: np.random.Generator, size: int = 64) -> Image.Image:
    image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    m = size // 8
    draw.ellipse((m, m, size - m, size - m), fill=int(rng.integers(70, 110)))
    j = int(rng.integers(-3, 4))
    c = size // 2
    if label == 0:  # bright blob upper left
        draw.ellipse((c - 20 + j, c - 20, c - 6 + j, c - 6), fill=230)
    elif label == 1:  # ring at the edge
        draw.ellipse((m + 2, c - 8 + j, m + 18, c + 8 + j), outline=240, width=3)
    elif label == 3:  # small spot low in the middle
        draw.ellipse((c - 4 + j, c + 10, c + 4 + j, c + 18), fill=250)
    # Smooth random "anatomy" inside the head makes every image distinct, as real slices
    # are (the duplicate audit must not merge images that merely share a layout).
    field = Image.fromarray(rng.uniform(0, 255, (6, 6)).astype(np.uint8)).resize(
        (size, size), Image.Resampling.BICUBIC
    )
    head = np.asarray(image, float) > 0
    texture = (np.asarray(field, float) - 128) * 0.35 * head
    noise = rng.normal(0, 6, (size, size))
    return Image.fromarray(np.clip(np.asarray(image, float) + texture + noise, 0, 255).astype(np.uint8))


def _save(image: Image.Image, path: Path, fmt: str = "JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)


def make_dataset(
    root: Path, train_per_class: int = 12, test_per_class: int = 4, seed: int = 0, awkward: bool = True
) -> Path:
    rng = np.random.default_rng(seed)
    for split, count in (("Training", train_per_class), ("Testing", test_per_class)):
        for label, name in enumerate(CLASSES):
            for i in range(count):
                image = slice_image(label, rng, size=int(rng.choice([64, 72, 80])))
                # Mixed modes like the real data: some stored as RGB.
                if i % 2:
                    image = image.convert("RGB")
                _save(image, root / split / name / f"{split[:2]}-{name}-{i:03d}.jpg")
    if awkward:
        add_awkward_files(root / "Training" / CLASSES[0], rng)
    return root


def add_awkward_files(folder: Path, rng: np.random.Generator) -> None:
    base = slice_image(0, rng)
    _save(base, folder / "png-named.jpg", "PNG")
    _save(base.convert("L"), folder / "gray.png", "PNG")
    rgba = base.convert("RGBA")
    rgba.putalpha(200)
    _save(rgba, folder / "rgba.png", "PNG")
    _save(base.convert("P"), folder / "palette.png", "PNG")
    sixteen = Image.fromarray(np.asarray(base, np.uint16) * 16)
    _save(sixteen, folder / "sixteen.png", "PNG")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")


def jpeg_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG")
    return out.getvalue()
