"""Reading one image file, whatever it really is, as an RGB array for the model.

The dataset names PNG files `.jpg` and mixes grayscale, RGB, RGBA and palette images,
and uploads can be anything. Every image the model ever sees (training, evaluation,
inference) goes through `load_rgb`, or `model_view` for an image already decoded, so
that all of them are converted the same way.

A run's `framing` says how a decoded image becomes the model's square input:
- "pad": the whole image, padded to a square with black;
- "head": one grayscale conversion, a crop to the head's bounding box, and the head's
  brightest percentile stretched to white. The dataset's sources differ in colour mode,
  margin around the head and brightness, and a model can tell them apart by those
  instead of by the anatomy; this framing takes them away (docs/data.md).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.data.dicom import is_dicom, read_dicom
from core.errors import ImageDecodeError

# Raster formats we decode. Anything else (SVG, HTML, PDF ...) is refused by content.
ACCEPTED_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "GIF", "WEBP")
# A 512x512 slice has 0.26 Mpx; the largest in the dataset is about 2.8 Mpx. Anything
# far above is a decompression bomb, refused from the header before decoding.
MAX_PIXELS = 40_000_000


@dataclass(frozen=True)
class ImageHeader:
    """What the file header says, read without decoding the pixels."""

    format: str
    mode: str
    width: int
    height: int


def _read_bytes(source: Path | bytes) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"cannot read {source}: {exc.strerror or exc}") from exc


def _open(data: bytes) -> Image.Image:
    if not data:
        raise ImageDecodeError("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageDecodeError("not a readable image (expected JPEG, PNG or DICOM)") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"image too large, refused as a decompression bomb ({exc})") from None
    except Exception as exc:  # Pillow plugins raise many types on hostile headers
        raise ImageDecodeError(f"truncated or corrupt image data ({exc})") from None
    if image.format not in ACCEPTED_FORMATS:
        raise ImageDecodeError(f"unsupported image format {image.format}")
    if image.width * image.height > MAX_PIXELS:
        raise ImageDecodeError(
            f"image too large: {image.width}x{image.height} pixels "
            f"(limit {MAX_PIXELS // 1_000_000} megapixels)"
        )
    return image


def read_header(source: Path | bytes) -> ImageHeader:
    """Format, mode and size from the header only (fast: no pixel decoding)."""
    if isinstance(source, bytes):
        image = _open(source)
    else:
        try:
            image = Image.open(source)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise ImageDecodeError(f"not a readable image: {exc}") from None
    with image:
        return ImageHeader(image.format or "?", image.mode, image.width, image.height)


def to_rgb(image: Image.Image) -> Image.Image:
    """One conversion for every mode: L, RGB, RGBA, LA, P, CMYK, 1, I;16, I, F."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # High bit depth scanner output: stretch the used range to 8 bits.
        values = np.asarray(image, dtype=np.float32)
        low, high = float(values.min()), float(values.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        image = Image.fromarray(((values - low) * scale).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        # Transparent pixels become black, the background of an MRI slice.
        background = Image.new("RGB", image.size, (0, 0, 0))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def decode(source: Path | bytes) -> Image.Image:
    """Decode by content, apply the EXIF orientation, convert to RGB. A DICOM file gives
    its first frame in the file's window (core.data.dicom for the other frames and windows).

    Raises ImageDecodeError with a human reason for anything that is not a whole,
    readable raster image.
    """
    data = _read_bytes(source)
    if is_dicom(data):
        return read_dicom(data).image(0)
    image = _open(data)
    try:
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)  # animated GIF / multi-page TIFF: first frame
        image.load()
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except ImageDecodeError:
        raise
    except Exception as exc:
        raise ImageDecodeError(f"truncated or corrupt image data ({exc})") from None


def fit_square(image: Image.Image, size: int) -> Image.Image:
    """Pad to a square with black (keeps the anatomy's aspect ratio), then resize."""
    return ImageOps.pad(image, (size, size), method=Image.Resampling.BILINEAR, color=(0, 0, 0))


def head_mask(gray: np.ndarray) -> np.ndarray:
    """Pixels brighter than the background: above 12% of the image's 99th percentile
    (and above 12 of 255, so that JPEG noise on black stays background)."""
    return gray > max(12.0, 0.12 * float(np.percentile(gray, 99)))


def frame_head(image: Image.Image) -> Image.Image:
    """One grayscale image cropped to the head's bounding box with a 2% margin, the
    head's 99th percentile stretched to 255. Rows and columns count as head when more
    than 2% of them is bright, so that a stray label or speck does not widen the box.
    An image with no such box (blank, or all head) is only converted and stretched."""
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    mask = head_mask(gray)
    rows = np.flatnonzero(mask.sum(axis=1) > 0.02 * gray.shape[1])
    cols = np.flatnonzero(mask.sum(axis=0) > 0.02 * gray.shape[0])
    if len(rows) > 8 and len(cols) > 8:
        margin = int(0.02 * max(gray.shape))
        top, bottom = max(rows[0] - margin, 0), min(rows[-1] + margin + 1, gray.shape[0])
        left, right = max(cols[0] - margin, 0), min(cols[-1] + margin + 1, gray.shape[1])
        gray, mask = gray[top:bottom, left:right], mask[top:bottom, left:right]
    if mask.any():
        high = float(np.percentile(gray[mask], 99))
        if high > 1:
            gray = np.clip(gray * (255.0 / high), 0, 255)
    return Image.fromarray(gray.astype(np.uint8), mode="L").convert("RGB")


def model_view(image: Image.Image, size: int, framing: str) -> np.ndarray:
    """The model's input for a decoded image: uint8 array of shape (size, size, 3)."""
    if framing == "head":
        image = frame_head(image)
    elif framing != "pad":
        raise ValueError(f"unknown framing {framing!r}")
    return np.asarray(fit_square(image.convert("RGB"), size), dtype=np.uint8)


def load_rgb(source: Path | bytes, size: int, framing: str) -> np.ndarray:
    """The model's view of a file: uint8 array of shape (size, size, 3)."""
    return model_view(decode(source), size, framing)


def decode_frames(source: Path | bytes) -> list[Image.Image]:
    """Every slice a file holds: the frames of a multi-frame DICOM, else one image."""
    data = _read_bytes(source)
    if is_dicom(data):
        scan = read_dicom(data)
        return [scan.image(i) for i in range(scan.n_frames)]
    return [decode(data)]
