"""DICOM reading: rescale, windows, MONOCHROME1, frames, compressed syntaxes, privacy."""

from __future__ import annotations

import io

import numpy as np
import pytest
from dicomgen import PATIENT_ID, PATIENT_NAME, dicom, htj2k, jpeg_baseline, no_pixels, rle
from PIL import Image

from core.data.dicom import Window, is_dicom, read_dicom
from core.data.images import decode, decode_frames, load_rgb
from core.errors import ImageDecodeError

RAMP = (np.arange(32 * 32).reshape(32, 32) * 3).astype(np.uint16)  # 0 .. 3069


def test_sixteen_bit_uses_the_file_window():
    scan = read_dicom(dicom(RAMP, window=(1000, 1000)))
    assert scan.window_from_file and scan.window == Window(1000, 1000)
    grey = np.asarray(scan.image().convert("L"), int)
    values = RAMP.astype(float)
    assert (grey[values <= 500] == 0).all()
    assert (grey[values >= 1500] == 255).all()
    middle = (values > 550) & (values < 1450)
    expected = (values[middle] - 500) / 1000 * 255
    assert np.abs(grey[middle] - expected).max() <= 1


def test_signed_pixels_with_rescale_give_modality_values():
    raw = (np.arange(16 * 16).reshape(16, 16) - 128).astype(np.int16)
    scan = read_dicom(dicom(raw, signed=True, slope=2.0, intercept=-10.0))
    np.testing.assert_allclose(scan.frames[0], raw * 2.0 - 10.0)
    assert scan.frames.min() < 0


def test_eight_bit_without_window_tags_gets_a_default_from_the_values():
    pixels = np.tile(np.arange(40, 200, 10, dtype=np.uint8), (16, 1))
    scan = read_dicom(dicom(pixels))
    assert not scan.window_from_file
    grey = np.asarray(scan.image().convert("L"))
    assert grey.min() == 0 and grey.max() == 255  # stretched to the values' range
    assert (np.diff(grey[0].astype(int)) >= 0).all()


def test_monochrome1_is_inverted():
    normal = np.asarray(read_dicom(dicom(RAMP, window=(1500, 3000))).image())
    inverted = np.asarray(read_dicom(dicom(RAMP, window=(1500, 3000), photometric="MONOCHROME1")).image())
    np.testing.assert_array_equal(inverted, 255 - normal)


def test_multi_frame_files_give_every_frame():
    frames = np.stack([np.full((24, 24), v, np.uint16) for v in (100, 2000, 4000)])
    frames[:, 0, 0] = 0
    frames[:, -1, -1] = 4095  # a common range, so the default window separates the frames
    data = dicom(frames)
    scan = read_dicom(data)
    assert scan.n_frames == 3 and scan.info["Frames"] == "3"
    centres = [np.asarray(image.convert("L"))[12, 12] for image in decode_frames(data)]
    assert centres[0] < centres[1] < centres[2]
    assert np.asarray(decode(data).convert("L"))[12, 12] == centres[0]  # single image: frame 1
    with pytest.raises(ImageDecodeError, match="frame 5 does not exist"):
        scan.image(5)


def test_found_by_content_whatever_the_name():
    data = dicom(RAMP, window=(1000, 2000))
    assert is_dicom(data) and not is_dicom(b"\x89PNG" + bytes(200))
    assert load_rgb(data, 75, "pad").shape == (75, 75, 3)


def test_rle_lossless_is_decoded():
    scan = read_dicom(rle(RAMP))
    np.testing.assert_array_equal(scan.frames[0], RAMP)
    assert scan.info["Transfer syntax"] == "RLE Lossless"


def test_jpeg_baseline_is_decoded():
    picture = Image.fromarray(np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1)))
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=95)
    scan = read_dicom(jpeg_baseline(out.getvalue(), 32, 32))
    assert np.abs(scan.frames[0] - np.asarray(picture, float)).mean() < 3


def test_a_syntax_without_decoder_is_named():
    with pytest.raises(ImageDecodeError, match="High-Throughput JPEG 2000"):
        read_dicom(htj2k())


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (dicom(RAMP)[:400], "DICOM"),
        (no_pixels(), "no image"),
        (bytes(128) + b"DICM" + b"\xff" * 50, "DICOM file holds no image"),
    ],
    ids=["truncated", "no-pixel-data", "garbage-after-magic"],
)
def test_broken_files_are_refused_with_a_reason(data, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        load_rgb(data, 75, "pad")


def test_no_identifying_tag_is_kept():
    scan = read_dicom(dicom(RAMP, window=(1000, 1000)))
    kept = repr(scan.info) + repr(vars(scan).keys())
    assert PATIENT_NAME not in kept and PATIENT_ID not in kept and "Hospital" not in kept
    assert scan.info["Modality"] == "MR"
