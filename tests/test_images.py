"""Decoding by content, one RGB conversion for every mode, and clear errors."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from core.data.images import decode, fit_square, load_rgb, model_view, read_header
from core.errors import ImageDecodeError


def encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def gradient(mode: str = "L", size=(40, 30)) -> Image.Image:
    values = np.tile(np.linspace(0, 255, size[0], dtype=np.uint8), (size[1], 1))
    return Image.fromarray(values).convert(mode)


def test_png_named_jpg_is_decoded_by_content(tmp_path):
    path = tmp_path / "scan.jpg"
    path.write_bytes(encode(gradient(), "PNG"))
    assert read_header(path).format == "PNG"
    assert load_rgb(path, 32, "pad").shape == (32, 32, 3)


@pytest.mark.parametrize("mode", ["L", "RGB", "P", "CMYK", "1", "LA"])
def test_every_mode_becomes_rgb_uint8(mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    image = decode(encode(gradient(mode), fmt))
    assert image.mode == "RGB"
    assert load_rgb(encode(gradient(mode), fmt), 16, "pad").dtype == np.uint8


def test_grayscale_and_rgb_copies_give_the_same_pixels():
    gray = encode(gradient("L"), "PNG")
    rgb = encode(gradient("RGB"), "PNG")
    np.testing.assert_array_equal(load_rgb(gray, 24, "pad"), load_rgb(rgb, 24, "pad"))


def test_transparent_pixels_become_black_background():
    rgba = Image.new("RGBA", (8, 8), (255, 255, 255, 0))
    rgba.putpixel((1, 1), (200, 100, 50, 255))
    array = np.asarray(decode(encode(rgba, "PNG")))
    assert array[0, 0].tolist() == [0, 0, 0]
    assert array[1, 1].tolist() == [200, 100, 50]


def test_sixteen_bit_is_stretched_to_full_range():
    values = np.linspace(1000, 4000, 64, dtype=np.uint16).reshape(8, 8)
    array = np.asarray(decode(encode(Image.fromarray(values), "PNG")))
    assert array.min() == 0 and array.max() == 255
    assert (array[..., 0] == array[..., 1]).all()


def test_exif_rotation_is_applied():
    image = gradient("RGB", size=(40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    assert decode(out.getvalue()).size == (20, 40)


def test_fit_square_pads_with_black_and_keeps_aspect():
    wide = Image.new("RGB", (40, 20), (255, 255, 255))
    square = np.asarray(fit_square(wide, 20))
    assert square.shape == (20, 20, 3)
    assert square[0, 10].tolist() == [0, 0, 0]  # padding above
    assert square[10, 10].tolist() == [255, 255, 255]


def png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header declares a huge image (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"hello, I am text named scan.jpg", "not a readable image"),
        (encode(gradient("RGB"), "JPEG")[:200], "truncated"),
        (encode(gradient(), "PNG")[:60], "truncated"),
        (png_with_size(60000, 60000), "too large"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "not a readable image"),
    ],
)
def test_bad_files_raise_a_clear_decode_error(data, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        load_rgb(data, 32, "pad")


def test_unreadable_path_names_the_file(tmp_path):
    with pytest.raises(ImageDecodeError, match="missing.jpg"):
        load_rgb(tmp_path / "missing.jpg", 32, "pad")


VALID = encode(gradient("RGB"), "JPEG")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=512),
        st.tuples(st.integers(0, len(VALID) - 1), st.binary(min_size=1, max_size=16)).map(
            lambda cut: VALID[: cut[0]] + cut[1] + VALID[cut[0] + len(cut[1]) :]
        ),
    )
)
def test_decoder_only_returns_an_image_or_raises_its_own_error(data):
    try:
        array = load_rgb(data, 16, "pad")
    except ImageDecodeError:
        return
    assert array.shape == (16, 16, 3) and array.dtype == np.uint8


def head_on_black(size=(300, 200), box=(40, 30, 140, 150), level=200, mode="RGB") -> Image.Image:
    """A bright rectangle (the head) at `box` = (left, top, right, bottom) on black."""
    values = np.zeros((size[1], size[0]), np.uint8)
    left, top, right, bottom = box
    values[top:bottom, left:right] = level
    values[top + 20 : top + 40, left + 20 : left + 40] = level // 2  # some anatomy
    return Image.fromarray(values).convert(mode)


def bright_extent(view: np.ndarray) -> tuple[float, float]:
    """Fraction of the view's width and height that the bright part spans."""
    mask = view[..., 0] > 60
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return (cols[-1] - cols[0] + 1) / view.shape[1], (rows[-1] - rows[0] + 1) / view.shape[0]


def test_head_framing_crops_to_the_head_whatever_its_margin():
    # 100 x 120 px of head in a 300 x 200 image: padded, it spans a third of the width.
    image = head_on_black()
    assert bright_extent(model_view(image, 64, "pad"))[0] < 0.4
    width, height = bright_extent(model_view(image, 64, "head"))
    assert height > 0.9 and width > 0.7  # the longer side fills the view; aspect is kept
    moved = head_on_black(size=(500, 500), box=(300, 200, 400, 320))  # elsewhere, wider margin
    assert bright_extent(model_view(moved, 64, "head")) == pytest.approx((width, height), abs=0.06)


def test_head_framing_hides_colour_mode_and_brightness():
    image = head_on_black()
    gray = image.convert("L")
    tinted = Image.merge("RGB", [gray, gray.point(lambda v: v * 0.9), gray.point(lambda v: v * 0.8)])
    dimmer = head_on_black(level=120)
    pad_gap = np.abs(model_view(image, 64, "pad").astype(int) - model_view(dimmer, 64, "pad")).max()
    assert pad_gap > 50
    head = model_view(image, 64, "head").astype(int)
    assert np.abs(head - model_view(dimmer, 64, "head")).max() <= 3
    view = model_view(tinted, 64, "head")
    assert (view[..., 0] == view[..., 1]).all() and (view[..., 1] == view[..., 2]).all()
    assert head.max() == 255  # the head's brightest percentile is stretched to white


def test_head_framing_ignores_a_speck_and_survives_blank_images():
    image = head_on_black()
    specked = np.asarray(image.convert("L")).copy()
    specked[190:193, 290:293] = 255  # a stray marker far from the head
    np.testing.assert_array_equal(
        model_view(Image.fromarray(specked).convert("RGB"), 64, "head"), model_view(image, 64, "head")
    )
    for blank in (Image.new("L", (50, 40)), Image.new("L", (50, 40), 180)):
        assert model_view(blank, 32, "head").shape == (32, 32, 3)
    with pytest.raises(ValueError, match="unknown framing"):
        model_view(image, 32, "zoom")
