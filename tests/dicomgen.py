"""DICOM files written by the tests with pydicom, each carrying made-up patient tags."""

from __future__ import annotations

import io
import zipfile

import numpy as np
from datagen import jpeg_bytes, slice_image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    HTJ2K,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

# Made-up identifying values: tests check they never reach a page, a CSV or a report.
PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "PID-424242"


def _base(rows: int, columns: int, syntax=ExplicitVRLittleEndian) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "19700101"
    ds.InstitutionName = "General Hospital"
    ds.Modality = "MR"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    return ds


def _bytes(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def dicom(
    pixels: np.ndarray,
    *,
    signed: bool = False,
    slope: float = 1.0,
    intercept: float = 0.0,
    window: tuple[float, float] | None = None,
    photometric: str = "MONOCHROME2",
) -> bytes:
    """An uncompressed file; `pixels` is (rows, columns) or (frames, rows, columns)."""
    frames = pixels if pixels.ndim == 3 else pixels[None]
    ds = _base(*frames.shape[1:])
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = int(signed)
    ds.PhotometricInterpretation = photometric
    if pixels.ndim == 3:
        ds.NumberOfFrames = len(frames)
    if slope != 1.0 or intercept != 0.0:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    return _bytes(ds)


def rle(pixels: np.ndarray) -> bytes:
    """16-bit RLE Lossless, a compressed syntax pydicom decodes itself."""
    ds = _base(*pixels.shape)
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.compress(RLELossless, encoding_plugin="pydicom")
    return _bytes(ds)


def jpeg_baseline(jpeg: bytes, rows: int, columns: int) -> bytes:
    """An 8-bit JPEG image encapsulated as JPEG Baseline, common in exported MRI."""
    ds = _base(rows, columns, JPEGBaseline8Bit)
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = encapsulate([jpeg])
    ds["PixelData"].VR = "OB"
    return _bytes(ds)


def htj2k(rows: int = 8, columns: int = 8) -> bytes:
    """Pixel data in a syntax with no installed decoder (High-Throughput JPEG 2000)."""
    ds = _base(rows, columns, HTJ2K)
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])
    ds["PixelData"].VR = "OB"
    return _bytes(ds)


def no_pixels() -> bytes:
    ds = _base(8, 8)
    del ds.Rows, ds.Columns
    return _bytes(ds)


def scan_bytes(label: int, seed: int) -> bytes:
    return jpeg_bytes(slice_image(label, np.random.default_rng(seed), size=80))


def volume() -> bytes:
    frames = np.stack(
        [np.asarray(slice_image(i, np.random.default_rng(i), 64), np.uint16) * 16 for i in range(3)]
    )
    return dicom(frames, window=(2000, 4000))


def mixed_zip() -> bytes:
    """Good, bad and junk files as a Mac or a PACS export would zip them."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("case1/scan.jpg", scan_bytes(0, 1))
        archive.writestr("case1/volume.dcm", volume())
        archive.writestr(
            "case2/IM0001", dicom(np.asarray(slice_image(3, np.random.default_rng(2), 64), np.uint8))
        )
        archive.writestr("case2/notes.txt", "not an image")
        archive.writestr("case2/broken.dcm", volume()[:300])
        archive.writestr("__MACOSX/case1/._scan.jpg", b"resource fork")
        archive.writestr("case2/.DS_Store", b"junk")
        archive.writestr("../../etc/passwd", b"root:x:0:0")  # a name only: never a path we touch
    return out.getvalue()
