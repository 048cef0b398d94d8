"""DICOM slices as images for the model, without keeping anything that identifies a patient.

A DICOM file stores modality values (after the rescale slope/intercept) that a viewer
maps to grey levels through a window (centre/width). We read only the pixel data and a
handful of technical tags; the dataset object, with the patient's name, id, dates and
the like, is dropped as soon as the pixels are out, so nothing identifying can reach a
page, a CSV or a report.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.errors import ImageDecodeError

# Part 10 files: a 128-byte preamble, then the magic. Found by content, any extension.
MAGIC_OFFSET = 128
MAGIC = b"DICM"
# A slice is at most what images.MAX_PIXELS allows; a volume at most this many voxels.
MAX_VOXELS = 200_000_000
# Technical tags that are safe to show (no person, date, place or institution).
SAFE_TAGS = ("Modality", "Rows", "Columns", "BitsStored", "PixelRepresentation", "PhotometricInterpretation")


def is_dicom(data: bytes) -> bool:
    return data[MAGIC_OFFSET : MAGIC_OFFSET + len(MAGIC)] == MAGIC


@dataclass(frozen=True)
class Window:
    center: float
    width: float

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Linear VOI window to uint8 (DICOM PS3.3 C.11.2.1.2, without the half-pixel)."""
        width = max(float(self.width), 1.0)
        low = self.center - width / 2
        return (np.clip((values - low) / width, 0.0, 1.0) * 255).astype(np.uint8)


@dataclass
class DicomScan:
    """The frames of one DICOM file as modality values, and how to display them."""

    frames: np.ndarray  # (n, rows, columns) float32, or (n, rows, columns, 3) uint8 for colour
    window: Window  # from the file, or from the values' range when the file has none
    window_from_file: bool
    invert: bool  # MONOCHROME1: high values are dark
    info: dict[str, str]  # technical tags only (SAFE_TAGS, frames, transfer syntax)

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    @property
    def is_colour(self) -> bool:
        return self.frames.ndim == 4

    def image(self, frame: int = 0, window: Window | None = None) -> Image.Image:
        """One frame as an RGB image, windowed (the file's window unless one is given)."""
        if not 0 <= frame < self.n_frames:
            raise ImageDecodeError(f"frame {frame} does not exist (the file has {self.n_frames})")
        if self.is_colour:
            return Image.fromarray(self.frames[frame]).convert("RGB")
        grey = (window or self.window).apply(self.frames[frame])
        if self.invert:
            grey = 255 - grey
        return Image.fromarray(grey, mode="L").convert("RGB")


def _first(value) -> float | None:
    """Window tags may hold several values (one per suggested window): take the first."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        value = value[0] if len(value) else None
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def default_window(values: np.ndarray) -> Window:
    """Robust range of the values (0.5 to 99.5 percentile), so one hot pixel does not
    flatten the rest of the slice."""
    low, high = np.percentile(values, [0.5, 99.5])
    if high <= low:
        low, high = float(values.min()), float(values.max()) + 1.0
    return Window(center=float(low + high) / 2, width=float(high - low))


def _pixels(ds) -> np.ndarray:
    syntax = ds.file_meta.get("TransferSyntaxUID")
    try:
        return ds.pixel_array
    except Exception as exc:  # pydicom raises several types for missing decoders
        if syntax is not None and syntax.is_compressed:
            raise ImageDecodeError(
                f"DICOM pixel data compressed as '{syntax.name}', which no installed decoder "
                "reads; export the series uncompressed (Explicit VR Little Endian)"
            ) from None
        raise ImageDecodeError(f"DICOM pixel data unreadable ({exc})") from None


def read_dicom(data: bytes) -> DicomScan:
    """Parse a DICOM file; raises ImageDecodeError with a human reason."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    try:
        with warnings.catch_warnings():  # pydicom warns, then reads on; we judge the result
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:
        raise ImageDecodeError(f"not a readable DICOM file ({exc})") from None
    if "PixelData" not in ds:
        raise ImageDecodeError("this DICOM file holds no image (no pixel data: a report or a document?)")
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        raise ImageDecodeError("DICOM file without valid image dimensions") from None
    if rows * columns * n_frames > MAX_VOXELS:
        raise ImageDecodeError(f"DICOM image too large: {n_frames} x {rows} x {columns} voxels")
    pixels = _pixels(ds)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    info = {tag: str(ds.get(tag, "")) for tag in SAFE_TAGS}
    info["Frames"] = str(n_frames)
    syntax = ds.file_meta.get("TransferSyntaxUID")
    info["Transfer syntax"] = syntax.name if syntax is not None else "unknown"
    colour = int(ds.get("SamplesPerPixel", 1)) == 3
    if colour:
        frames = pixels.reshape(n_frames, rows, columns, 3).astype(np.uint8)
        return DicomScan(frames, Window(127.5, 255), False, False, info)
    try:
        values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32)
    except Exception as exc:
        raise ImageDecodeError(f"DICOM rescale tags unusable ({exc})") from None
    frames = values.reshape(n_frames, rows, columns)
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    from_file = center is not None and width is not None and width > 0
    window = Window(center, width) if from_file else default_window(frames)
    return DicomScan(frames, window, from_file, photometric == "MONOCHROME1", info)
