"""Hostile and awkward files, generated: what people drag into a demo app."""

from __future__ import annotations

import io

import numpy as np
from datagen import slice_image
from PIL import Image


def _bytes(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def corpus() -> dict[str, tuple[bytes, str | None]]:
    """name -> (content, the reason it is refused, or None when it must be classified)."""
    scan = slice_image(1, np.random.default_rng(3), size=96)
    jpeg = _bytes(scan.convert("RGB"), "JPEG")
    png = _bytes(scan, "PNG")
    exif = Image.Exif()
    exif[0x0112] = 6
    bomb = io.BytesIO()
    Image.new("1", (12000, 12000)).save(bomb, format="PNG")  # 144 Mpx, a few kB
    frames = [scan.convert("P"), slice_image(2, np.random.default_rng(4), size=96).convert("P")]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    return {
        "empty.jpg": (b"", "the file is empty"),
        "notes.jpg": (b"Patient list, do not share\n" * 20, "not a readable image"),
        "truncated.jpg": (jpeg[: len(jpeg) // 3], "truncated or corrupt"),
        "truncated.png": (png[: len(png) // 2], "truncated or corrupt"),
        "bomb.png": (bomb.getvalue(), "too large"),
        "page.png": (b"<html><body><script>alert(1)</script></body></html>", "not a readable image"),
        "drawing.png": (
            b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>",
            "not a readable image",
        ),
        "tiny-1x1.png": (_bytes(Image.new("L", (1, 1), 128), "PNG"), None),
        "sixteen-bit.png": (_bytes(Image.fromarray(np.asarray(scan, np.uint16) * 200), "PNG"), None),
        "cmyk.jpg": (_bytes(scan.convert("CMYK"), "JPEG"), None),
        "animated.gif": (gif.getvalue(), None),
        "rotated-exif.jpg": (_bytes(scan.convert("RGB"), "JPEG", exif=exif), None),
        ("very-long-name-" + "x" * 200 + ".png"): (png, None),
    }
