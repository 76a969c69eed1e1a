"""Tests for services.images. Every image is generated here with Pillow; no fixtures on disk."""

from __future__ import annotations

import asyncio
import contextlib
import io
import pickle
import random
import struct
import time
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pillow_heif
import pytest
from PIL import ExifTags, Image, ImageCms, ImageDraw, ImageFile, features
from PIL.JpegImagePlugin import JpegImageFile

from bench.hostile_images import jpeg_multiscan
from handlers.texts.messages import MESSAGES
from services.images import intake as intake_module
from services.images.intake import DecodeBudget, ImageIntake
from services.images.normalize import (
    MAX_DOWNLOAD_BYTES,
    ImageLimits,
    ImageRejected,
    NormalizedImage,
    RejectReason,
    check_file_size,
    decode_cost,
    normalize,
    sniff_is_image,
)
from services.model import FailureKind, InputImage

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)
DEFAULT = ImageLimits()

HEIF_CAN_ENCODE = bool(pillow_heif.libheif_info().get("HEIF"))
AVIF_CAN_ENCODE = features.check("avif") is True
needs_heif = pytest.mark.skipif(not HEIF_CAN_ENCODE, reason="libheif has no HEVC encoder here")
needs_avif = pytest.mark.skipif(not AVIF_CAN_ENCODE, reason="Pillow built without AVIF")


# --------------------------------------------------------------------------- helpers


def encode(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def quadrants(size: tuple[int, int] = (400, 300)) -> Image.Image:
    """Red, green, blue and white quadrants (clockwise from top-left)."""
    w, h = size
    img = Image.new("RGB", size, WHITE)
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, w // 2 - 1, h // 2 - 1), fill=RED)
    draw.rectangle((w // 2, 0, w - 1, h // 2 - 1), fill=GREEN)
    draw.rectangle((w // 2, h // 2, w - 1, h - 1), fill=BLUE)
    return img


def noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    w, h = size
    return Image.frombytes("RGB", size, random.Random(seed).randbytes(w * h * 3))


def exif_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return exif.tobytes()


def decode(result: NormalizedImage, limits: ImageLimits = DEFAULT) -> Image.Image:
    """Open the output and check everything DashScope and the API contract require."""
    assert limits.min_bytes <= len(result.data) <= limits.max_bytes
    img = Image.open(io.BytesIO(result.data))
    assert img.format == "JPEG"
    assert img.mode == "RGB"
    assert img.size == (result.width, result.height)
    assert limits.min_side <= min(img.size) and max(img.size) <= limits.max_side
    for key in ("exif", "icc_profile", "progressive", "progression", "xmp"):
        assert key not in img.info
    img.load()
    return img


def assert_colour(actual: object, expected: tuple[int, int, int], tolerance: int = 40) -> None:
    assert isinstance(actual, tuple), actual
    assert all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True)), (
        actual,
        expected,
    )


def rejected(data: bytes, limits: ImageLimits = DEFAULT) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        normalize(data, limits)
    return info.value


def png_declaring_size(width: int, height: int) -> bytes:
    """A real 1x1 mode-"1" PNG whose IHDR claims another size (CRC fixed up)."""
    data = bytearray(encode(Image.new("1", (1, 1)), "PNG"))
    assert data[12:16] == b"IHDR"
    chunk = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = chunk
    data[29:33] = struct.pack(">I", zlib.crc32(chunk))
    return bytes(data)


@pytest.fixture(scope="module")
def huge_jpeg() -> bytes:
    """A 6000x8000 (48 MP) JPEG with a red marker at the top-left."""
    img = Image.linear_gradient("L").resize((6000, 8000)).convert("RGB")
    ImageDraw.Draw(img).rectangle((0, 0, 599, 799), fill=RED)
    return encode(img, "JPEG", quality=90)


class DraftSpy:
    """Records JpegImageFile.draft calls: (requested size, decoded size afterwards)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[tuple[int, int] | None, tuple[int, int]]] = []
        original = JpegImageFile.draft

        def draft(
            img: JpegImageFile, mode: str | None, size: tuple[int, int] | None
        ) -> tuple[str, tuple[int, int, float, float]] | None:
            result = original(img, mode, size)
            self.calls.append((size, img.size))
            return result

        monkeypatch.setattr(JpegImageFile, "draft", draft)


# --------------------------------------------------------------------------- formats

FORMAT_CASES: list[Any] = [
    pytest.param("JPEG", {"quality": 90}, id="jpeg"),
    pytest.param("JPEG", {"quality": 90, "progressive": True}, id="jpeg-progressive"),
    pytest.param("PNG", {}, id="png"),
    pytest.param("WEBP", {"quality": 90}, id="webp"),
    pytest.param("BMP", {}, id="bmp"),
    pytest.param("GIF", {}, id="gif"),
    pytest.param("TIFF", {}, id="tiff"),
    pytest.param("HEIF", {"quality": 90}, id="heic", marks=needs_heif),
    pytest.param("AVIF", {"quality": 90}, id="avif", marks=needs_avif),
]


@pytest.mark.parametrize(("fmt", "params"), FORMAT_CASES)
def test_formats_become_rgb_jpeg(fmt: str, params: dict[str, Any]) -> None:
    data = encode(quadrants(), fmt, **params)

    out = decode(normalize(data))

    assert out.size == (400, 300)
    assert_colour(out.getpixel((100, 75)), RED)
    assert_colour(out.getpixel((300, 75)), GREEN)
    assert_colour(out.getpixel((300, 225)), BLUE)
    assert_colour(out.getpixel((100, 225)), WHITE)


def test_mpo_uses_first_picture_and_draft(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = DraftSpy(monkeypatch)
    first, second = quadrants((1600, 1200)), Image.new("RGB", (1600, 1200), BLUE)
    data = encode(first, "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(data)).format == "MPO"

    out = decode(normalize(data, ImageLimits(max_side=400)))

    assert out.size == (400, 300)
    assert_colour(out.getpixel((100, 75)), RED)
    assert spy.calls == [((300, 225), (400, 300))]  # decoded at 1/4 scale


# --------------------------------------------------------------------------- orientation

# Where the 40x40 red marker stored at the top-left of a 300x200 image must be shown.
ORIENTATION_CASES = [
    (1, (300, 200), (20, 20)),
    (3, (300, 200), (279, 179)),
    (5, (200, 300), (20, 20)),
    (6, (200, 300), (179, 20)),
    (7, (200, 300), (179, 279)),
    (8, (200, 300), (20, 279)),
]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize(("orientation", "size", "marker"), ORIENTATION_CASES)
def test_exif_orientation(
    fmt: str, orientation: int, size: tuple[int, int], marker: tuple[int, int]
) -> None:
    img = Image.new("RGB", (300, 200), BLUE)
    ImageDraw.Draw(img).rectangle((0, 0, 39, 39), fill=RED)
    data = encode(img, fmt, exif=exif_with_orientation(orientation))

    out = decode(normalize(data))

    assert out.size == size
    assert_colour(out.getpixel(marker), RED)
    assert not out.getexif()  # orientation is baked in, nothing may rotate it again


@needs_heif
def test_heic_orientation_is_not_applied_twice() -> None:
    img = Image.new("RGB", (300, 200), BLUE)
    ImageDraw.Draw(img).rectangle((0, 0, 39, 39), fill=RED)
    data = encode(img, "HEIF", quality=90, exif=exif_with_orientation(6))

    out = decode(normalize(data))

    assert out.size == (200, 300)
    assert_colour(out.getpixel((179, 20)), RED)


def test_orientation_with_draft(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = DraftSpy(monkeypatch)
    img = Image.new("RGB", (3000, 2000), BLUE)
    ImageDraw.Draw(img).rectangle((0, 0, 299, 299), fill=RED)
    data = encode(img, "JPEG", exif=exif_with_orientation(6))

    out = decode(normalize(data, ImageLimits(max_side=1024)))

    assert out.size == (683, 1024)
    assert_colour(out.getpixel((683 - 30, 30)), RED)
    assert_colour(out.getpixel((30, 1024 - 30)), BLUE)
    # the draft size is in stored orientation, at DRAFT_SLACK of the final size
    assert spy.calls == [((768, 512), (1500, 1000))]


# --------------------------------------------------------------------------- modes


@pytest.mark.parametrize(
    ("size", "expected"), [((300, 300), (300, 300)), ((3000, 600), (2048, 410))]
)
def test_cmyk_jpeg(size: tuple[int, int], expected: tuple[int, int]) -> None:
    data = encode(Image.new("CMYK", size, (0, 255, 255, 0)), "JPEG", quality=95)
    assert b"Adobe" in data  # Pillow writes Adobe-style (inverted) CMYK

    out = decode(normalize(data))

    assert out.size == expected
    assert_colour(out.getpixel((150, 150)), RED)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_alpha_is_flattened_on_white(fmt: str) -> None:
    img = Image.new("RGBA", (300, 300), (0, 0, 0, 0))  # transparent *black*
    draw = ImageDraw.Draw(img)
    draw.rectangle((100, 100, 199, 199), fill=(*RED, 255))
    draw.rectangle((0, 250, 299, 299), fill=(0, 0, 0, 128))
    data = encode(img, fmt, **({"lossless": True} if fmt == "WEBP" else {}))

    out = decode(normalize(data))

    assert_colour(out.getpixel((20, 20)), WHITE, tolerance=6)
    assert_colour(out.getpixel((150, 150)), RED)
    assert_colour(out.getpixel((150, 275)), (127, 127, 127), tolerance=8)


def test_gray_with_alpha() -> None:
    img = Image.new("LA", (300, 300), (0, 0))
    ImageDraw.Draw(img).rectangle((100, 100, 199, 199), fill=(0, 255))

    out = decode(normalize(encode(img, "PNG")))

    assert_colour(out.getpixel((20, 20)), WHITE, tolerance=6)
    assert_colour(out.getpixel((150, 150)), (0, 0, 0), tolerance=10)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency(fmt: str) -> None:
    img = Image.new("P", (300, 300), 0)
    img.putpalette([0, 0, 0, *BLUE])  # index 0 black, index 1 blue
    ImageDraw.Draw(img).rectangle((100, 100, 199, 199), fill=1)

    out = decode(normalize(encode(img, fmt, transparency=0)))

    assert_colour(out.getpixel((20, 20)), WHITE, tolerance=6)
    assert_colour(out.getpixel((150, 150)), BLUE)


def test_rgb_with_colour_key_transparency() -> None:
    img = Image.new("RGB", (300, 300), (0, 0, 0))
    ImageDraw.Draw(img).rectangle((100, 100, 199, 199), fill=GREEN)

    out = decode(normalize(encode(img, "PNG", transparency=(0, 0, 0))))

    assert_colour(out.getpixel((20, 20)), WHITE, tolerance=6)
    assert_colour(out.getpixel((150, 150)), GREEN)


@pytest.mark.parametrize(
    ("mode", "value", "fmt", "expected"),
    [
        ("I;16", 128 * 257, "PNG", 128),
        ("I;16", 65535, "PNG", 255),
        ("I;16", 200, "PNG", 1),  # dark 16-bit stays dark
        ("I", 100, "TIFF", 100),
        ("I", 40 * 257, "TIFF", 40),
        ("F", 0.5, "TIFF", 128),
        ("1", 1, "PNG", 255),
        ("L", 77, "PNG", 77),
    ],
)
def test_gray_and_high_bit_depth(mode: str, value: float, fmt: str, expected: int) -> None:
    img = Image.new(mode, (300, 300), value)
    ImageDraw.Draw(img).rectangle((0, 0, 49, 49), fill=0)  # dark corner for contrast

    out = decode(normalize(encode(img, fmt)))

    assert_colour(out.getpixel((150, 150)), (expected,) * 3, tolerance=3)


def test_metadata_is_stripped_and_colour_kept() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Phone"
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(quadrants(), "JPEG", exif=exif.tobytes(), icc_profile=srgb, comment=b"hi")

    out = decode(normalize(data))

    assert "comment" not in out.info
    assert_colour(out.getpixel((100, 75)), RED)


def red_green_swapped_profile() -> bytes:
    """sRGB with the red and green primaries swapped (and renamed): a wide-gamut stand-in."""
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    (count,) = struct.unpack_from(">I", data, 128)
    tags = {}
    for i in range(count):
        sig, offset, size = struct.unpack_from(">4sII", data, 132 + 12 * i)
        tags[sig] = (offset, size)
    (r_at, r_size), (g_at, g_size) = tags[b"rXYZ"], tags[b"gXYZ"]
    assert r_size == g_size
    red, green = bytes(data[r_at : r_at + r_size]), bytes(data[g_at : g_at + g_size])
    data[r_at : r_at + r_size], data[g_at : g_at + g_size] = green, red
    return bytes(data).replace("sRGB".encode("utf-16-be"), "Swap".encode("utf-16-be"))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_colour_profile_is_converted_to_srgb(fmt: str) -> None:
    profile = red_green_swapped_profile()
    assert "sRGB" not in ImageCms.getProfileDescription(
        ImageCms.ImageCmsProfile(io.BytesIO(profile))
    )
    data = encode(quadrants(), fmt, icc_profile=profile)

    out = decode(normalize(data))

    assert_colour(out.getpixel((100, 75)), GREEN, tolerance=60)  # stored "red"
    assert_colour(out.getpixel((300, 75)), RED, tolerance=60)  # stored "green"
    assert_colour(out.getpixel((300, 225)), BLUE, tolerance=60)


def test_broken_icc_profile_is_ignored() -> None:
    data = encode(quadrants(), "JPEG", icc_profile=b"definitely not an ICC profile")

    out = decode(normalize(data))

    assert_colour(out.getpixel((100, 75)), RED)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animation_uses_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (300, 300), colour) for colour in (RED, GREEN, BLUE)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3

    out = decode(normalize(data))

    assert_colour(out.getpixel((150, 150)), RED)


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("size", "exif", "reported"),
    [
        ((100, 100), b"", (100, 100)),
        ((149, 3000), b"", (149, 3000)),
        ((5000, 120), b"", (5000, 120)),
        ((5000, 200), b"", (5000, 200)),  # fits 2048 wide only at 2048x82
        ((300, 120), exif_with_orientation(6), (120, 300)),  # size as displayed
    ],
)
def test_too_small(size: tuple[int, int], exif: bytes, reported: tuple[int, int]) -> None:
    error = rejected(encode(Image.new("RGB", size, RED), "JPEG", exif=exif))

    assert error.reason is RejectReason.TOO_SMALL
    assert (error.width, error.height) == reported


def test_smallest_allowed_size_passes() -> None:
    out = decode(normalize(encode(Image.new("RGB", (150, 2048), RED), "PNG")))

    assert out.size == (150, 2048)


def test_huge_jpeg_is_drafted(huge_jpeg: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = DraftSpy(monkeypatch)

    started = time.perf_counter()
    result = normalize(huge_jpeg)
    elapsed = time.perf_counter() - started

    out = decode(result)
    # decoded at 1/4 scale: the long side lands just under max_side (>= 75 %), 3:4 kept
    assert out.size == (1500, 2000)
    assert_colour(out.getpixel((50, 50)), RED)
    assert spy.calls == [((1152, 1536), (1500, 2000))]
    assert elapsed < 3.0


def test_huge_jpeg_max_side_4096(huge_jpeg: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = DraftSpy(monkeypatch)

    out = decode(normalize(huge_jpeg, ImageLimits(max_side=4096)), ImageLimits(max_side=4096))

    assert out.size == (3000, 4000)  # decoded at 1/2: within DRAFT_SLACK of 4096
    assert spy.calls == [((2304, 3072), (3000, 4000))]


def test_big_png_is_downscaled() -> None:
    out = decode(normalize(encode(quadrants((3000, 1000)), "PNG", compress_level=1)))

    assert out.size == (2048, 683)
    assert_colour(out.getpixel((400, 100)), RED)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(png_declaring_size(30000, 30000), id="900MP-pillow-error"),
        pytest.param(png_declaring_size(10000, 9500), id="95MP-pillow-warning"),
        pytest.param(png_declaring_size(12000, 9000), id="108MP-over-max_pixels"),
    ],
)
def test_decompression_bomb(data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("must not decode")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    max_pixels_before = Image.MAX_IMAGE_PIXELS
    filters_before = list(warnings.filters)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        error = rejected(data)

    assert error.reason is RejectReason.TOO_MANY_PIXELS
    assert not caught
    assert max_pixels_before == Image.MAX_IMAGE_PIXELS
    assert warnings.filters == filters_before


def test_max_pixels_limit_reports_size(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("must not decode")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)

    error = rejected(png_declaring_size(2000, 1000), ImageLimits(max_pixels=1_000_000))

    assert error.reason is RejectReason.TOO_MANY_PIXELS
    assert (error.width, error.height) == (2000, 1000)


# --------------------------------------------------------------------------- broken input


def _truncated_jpeg() -> bytes:
    data = encode(noise((300, 300)), "JPEG", quality=90)
    return data[: len(data) // 2]


def _truncated_png() -> bytes:
    data = encode(noise((300, 300)), "PNG")
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(_truncated_jpeg(), RejectReason.CORRUPT, id="truncated-jpeg"),
        pytest.param(_truncated_png(), RejectReason.CORRUPT, id="truncated-png"),
        pytest.param(encode(quadrants(), "JPEG")[:20], RejectReason.CORRUPT, id="jpeg-header"),
        pytest.param(encode(quadrants(), "GIF")[:30], RejectReason.CORRUPT, id="gif-header"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\0" * 100, RejectReason.CORRUPT, id="png-garbage"),
        pytest.param(
            random.Random(1).randbytes(20_000), RejectReason.UNSUPPORTED_FORMAT, id="random"
        ),
        pytest.param(b"hello, this is not an image\n" * 50, RejectReason.UNSUPPORTED_FORMAT),
        pytest.param(b"", RejectReason.UNSUPPORTED_FORMAT, id="empty"),
        pytest.param(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", RejectReason.UNSUPPORTED_FORMAT, id="pdf"),
        pytest.param(
            b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 300 300\n",
            RejectReason.UNSUPPORTED_FORMAT,
            id="eps-never-reaches-ghostscript",
        ),
        pytest.param(encode(quadrants((64, 64)), "ICO"), RejectReason.UNSUPPORTED_FORMAT, id="ico"),
    ],
)
def test_broken_or_foreign_input(data: bytes, reason: RejectReason) -> None:
    assert rejected(data).reason is reason


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"])
def test_mangled_files_never_leak_pillow_errors(fmt: str) -> None:
    rng = random.Random(fmt)
    original = encode(quadrants((200, 200)), fmt)
    for _ in range(25):
        data = bytearray(original)
        if rng.random() < 0.3:
            data = data[: rng.randrange(1, len(data))]
        else:
            for _ in range(rng.randrange(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        with contextlib.suppress(ImageRejected):
            decode(normalize(bytes(data)))


# --------------------------------------------------------------------------- byte limits


def test_flat_minimum_image_is_padded_to_min_bytes() -> None:
    result = normalize(encode(Image.new("RGB", (150, 150), GREEN), "PNG"))

    out = decode(result)
    assert len(result.data) >= 5 * 1024
    assert out.size == (150, 150)
    assert_colour(out.getpixel((75, 75)), GREEN, tolerance=2)


def test_noisy_4096_image_fits_max_bytes() -> None:
    limits = ImageLimits(max_side=4096)
    data = encode(noise((4096, 4096)), "BMP")

    result = normalize(data, limits)

    assert len(result.data) <= 5 * 1024 * 1024
    out = decode(result, limits)
    assert out.width == out.height >= 2048


def test_downscale_steps_keep_aspect() -> None:
    limits = ImageLimits(max_side=1000, max_bytes=150_000)
    result = normalize(encode(noise((1000, 500)), "BMP"), limits)

    decode(result, limits)
    assert result.width < 1000
    assert abs(result.width / result.height - 2) < 0.02


def test_impossible_byte_limit_is_rejected() -> None:
    limits = ImageLimits(max_side=1000, min_bytes=0, max_bytes=1024)

    error = rejected(encode(noise((1000, 1000)), "BMP"), limits)

    assert error.reason is RejectReason.FILE_TOO_LARGE


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_side": 149},
        {"max_side": 4097},
        {"min_side": 0},
        {"max_side": 300, "min_side": 301},
        {"min_bytes": -1},
        {"min_bytes": 100_000},
        {"min_bytes": 5000, "max_bytes": 5000},
        {"max_pixels": 0},
    ],
)
def test_invalid_limits(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        ImageLimits(**kwargs)


@pytest.mark.parametrize("max_side", [150, 4096])
def test_valid_limit_bounds(max_side: int) -> None:
    assert ImageLimits(max_side=max_side).max_side == max_side


# --------------------------------------------------------------------------- misc API


@pytest.mark.parametrize(
    ("size", "limit", "ok"),
    [
        (None, MAX_DOWNLOAD_BYTES, True),
        (0, MAX_DOWNLOAD_BYTES, True),
        (MAX_DOWNLOAD_BYTES, MAX_DOWNLOAD_BYTES, True),
        (MAX_DOWNLOAD_BYTES + 1, MAX_DOWNLOAD_BYTES, False),
        (1001, 1000, False),
    ],
)
def test_check_file_size(size: int | None, limit: int, ok: bool) -> None:
    if ok:
        check_file_size(size, limit)
        return
    with pytest.raises(ImageRejected) as info:
        check_file_size(size, limit)
    assert info.value.reason is RejectReason.FILE_TOO_LARGE


def test_check_file_size_default_is_telegram_limit() -> None:
    assert MAX_DOWNLOAD_BYTES == 20 * 1024 * 1024
    check_file_size(MAX_DOWNLOAD_BYTES)
    with pytest.raises(ImageRejected):
        check_file_size(MAX_DOWNLOAD_BYTES + 1)


SNIFF_FORMATS: list[Any] = [
    pytest.param("JPEG", id="jpeg"),
    pytest.param("PNG", id="png"),
    pytest.param("GIF", id="gif"),
    pytest.param("WEBP", id="webp"),
    pytest.param("BMP", id="bmp"),
    pytest.param("TIFF", id="tiff"),
    pytest.param("HEIF", id="heic", marks=needs_heif),
    pytest.param("AVIF", id="avif", marks=needs_avif),
]


@pytest.mark.parametrize("fmt", SNIFF_FORMATS)
def test_sniff_accepts_images(fmt: str) -> None:
    data = encode(quadrants((160, 160)), fmt)
    assert sniff_is_image(data[:32])
    assert sniff_is_image(data)


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"hello world, definitely text",
        b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41",  # MP4
        b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ",  # QuickTime (Live Photo video)
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj",
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00",
        b"BMW owners club newsletter, issue 12",
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00",
    ],
)
def test_sniff_rejects_non_images(head: bytes) -> None:
    assert not sniff_is_image(head)


def test_sniff_heif_by_compatible_brand() -> None:
    head = b"\x00\x00\x00\x1cftypXXXX\x00\x00\x00\x00mif1heicmiaf"
    assert sniff_is_image(head)


def test_concurrent_normalize() -> None:
    inputs = [
        encode(quadrants(), "PNG"),
        png_declaring_size(30000, 30000),
        encode(quadrants(), "JPEG"),
        b"not an image",
    ] * 4
    filters_before = list(warnings.filters)

    def run(data: bytes) -> RejectReason | None:
        try:
            decode(normalize(data))
        except ImageRejected as error:
            return error.reason
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, inputs))

    assert (
        results
        == [
            None,
            RejectReason.TOO_MANY_PIXELS,
            None,
            RejectReason.UNSUPPORTED_FORMAT,
        ]
        * 4
    )
    assert warnings.filters == filters_before


def test_rejection_message() -> None:
    error = ImageRejected(RejectReason.TOO_SMALL, 100, 90)
    assert (error.reason, error.width, error.height) == (RejectReason.TOO_SMALL, 100, 90)
    assert "100x90" in str(error)
    assert ImageRejected(RejectReason.CORRUPT).width is None
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reason, copy.width, copy.height) == (RejectReason.TOO_SMALL, 100, 90)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF"])
def test_downloads_as_bytearray_are_accepted(fmt: str) -> None:
    """Telegram downloads arrive as bytearray; they are checked without a copy."""
    if fmt == "HEIF":
        pillow_heif.register_heif_opener()
    data = bytearray(encode(quadrants((400, 300)), fmt))
    assert sniff_is_image(data[:64])
    assert decode(normalize(data)).size == (400, 300)


# --------------------------------------------------------------------------- memory bound


def png_header(width: int, height: int, bit_depth: int, colour_type: int) -> bytes:
    """A PNG that stops after an empty IDAT: Pillow reads the header, decoding would fail."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    plte = chunk(b"PLTE", bytes(768)) if colour_type == 3 else b""
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + plte + chunk(b"IDAT", b"")


def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def load(self: ImageFile.ImageFile) -> None:
        raise AssertionError("must not decode")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


@pytest.mark.parametrize(
    ("bit_depth", "colour_type"),
    [
        pytest.param(16, 0, id="16-bit-gray"),  # the issue's 190 KB file that took ~1 GB
        pytest.param(16, 2, id="16-bit-RGB"),
        pytest.param(16, 4, id="16-bit-gray-alpha"),
        pytest.param(8, 2, id="RGB"),
        pytest.param(8, 4, id="gray-alpha"),
        pytest.param(8, 6, id="RGBA"),
    ],
)
def test_wide_huge_png_is_refused_from_header(
    bit_depth: int, colour_type: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_decoding(monkeypatch)
    data = png_header(9400, 9400, bit_depth, colour_type)

    error = rejected(data)

    assert (error.reason, error.width, error.height) == (
        RejectReason.TOO_MANY_PIXELS,
        9400,
        9400,
    )
    with pytest.raises(ImageRejected) as info:
        decode_cost(data)
    assert info.value.reason is RejectReason.TOO_MANY_PIXELS


@pytest.mark.parametrize(
    ("bit_depth", "colour_type"),
    [
        pytest.param(8, 0, id="gray"),
        pytest.param(8, 3, id="palette"),
        pytest.param(1, 0, id="1-bit"),
    ],
)
def test_one_byte_modes_fit_at_9400_px(
    bit_depth: int, colour_type: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_decoding(monkeypatch)
    cost = decode_cost(png_header(9400, 9400, bit_depth, colour_type))
    # the decoded image (1 byte per pixel) and a quarter-size RGB(A) reduction
    assert 9400 * 9400 < cost <= DEFAULT.max_decoded_bytes


def test_decode_cost_counts_bytes_per_pixel(monkeypatch: pytest.MonkeyPatch) -> None:
    no_decoding(monkeypatch)
    gray = decode_cost(png_header(5000, 5000, 8, 0))
    gray16 = decode_cost(png_header(5000, 5000, 16, 0))
    rgba = decode_cost(png_header(5000, 5000, 8, 6))
    assert gray < gray16 < rgba
    assert gray16 > 25_000_000 * 2  # the decoded image: 2 bytes per pixel
    assert rgba > 25_000_000 * 4  # 4 bytes per pixel


def test_max_decoded_bytes_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(quadrants((400, 300)), "PNG")
    cost = decode_cost(data)
    assert decode(normalize(data, ImageLimits(max_decoded_bytes=cost)))

    no_decoding(monkeypatch)
    error = rejected(data, ImageLimits(max_decoded_bytes=cost - 1))
    assert (error.reason, error.width, error.height) == (RejectReason.TOO_MANY_PIXELS, 400, 300)


def test_invalid_max_decoded_bytes() -> None:
    with pytest.raises(ValueError):
        ImageLimits(max_decoded_bytes=0)


def test_progressive_jpeg_counts_its_coefficient_buffer() -> None:
    """libjpeg keeps all DCT coefficients of a progressive JPEG, whatever the draft scale."""
    img = Image.new("RGB", (4000, 3000), (200, 120, 40))
    baseline = encode(img, "JPEG", quality=80)
    progressive = encode(img, "JPEG", quality=80, progressive=True)

    # 4:2:0: luma at full size, two chroma planes at a quarter; 2 bytes per coefficient
    coefficients = 4000 * 3000 * 2 + 2 * (2000 * 1504 * 2)
    drafted = 2000 * 1500 * 4  # decoded at 1/2 scale, 4 bytes per pixel
    assert decode_cost(progressive) >= len(progressive) + coefficients + drafted
    assert decode_cost(baseline) < len(baseline) + coefficients

    limits = ImageLimits(max_decoded_bytes=decode_cost(baseline) + 1024 * 1024)
    assert decode(normalize(baseline, limits)).size == (2000, 1500)
    assert rejected(progressive, limits).reason is RejectReason.TOO_MANY_PIXELS


def test_sequential_jpeg_in_several_scans_counts_its_coefficient_buffer() -> None:
    # Three scans, one per component (what `jpegtran -scans` can make); hand-written.
    data = jpeg_multiscan(3000)()
    coefficients = 3 * 3000 * 3000 * 2
    assert decode_cost(data) >= len(data) + coefficients

    out = decode(normalize(data))  # and it decodes
    assert out.size == (2048, 2048)
    assert_colour(out.getpixel((1000, 1000)), (128, 128, 128), tolerance=2)

    limits = ImageLimits(max_decoded_bytes=coefficients)
    assert rejected(data, limits).reason is RejectReason.TOO_MANY_PIXELS


def test_webp_counts_its_decoder_buffers() -> None:
    data = encode(Image.new("RGB", (1000, 1000), RED), "WEBP", lossless=True)
    # libwebp's canvas and frame, the bytes handed to Pillow, Pillow's image: 4 bytes each
    assert decode_cost(data) >= 16 * 1000 * 1000


def test_wide_modes_are_reduced_in_strips(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above _REDUCE_ABOVE_PIXELS, a converted mode never exists at full size."""
    converted: list[tuple[str, tuple[int, int]]] = []
    original = Image.Image.convert

    def spy(self: Image.Image, mode: str | None = None, *args: Any, **kwargs: Any) -> Image.Image:
        result = original(self, mode, *args, **kwargs)
        converted.append((result.mode, result.size))
        return result

    monkeypatch.setattr(Image.Image, "convert", spy)
    img = Image.new("P", (4200, 3000), 0)
    img.putpalette(RED + WHITE)
    ImageDraw.Draw(img).rectangle((2100, 0, 4199, 2999), fill=1)
    data = encode(img, "PNG", transparency=1)  # the right half is transparent

    out = decode(normalize(data))

    assert out.size == (2048, 1463)
    assert_colour(out.getpixel((500, 700)), RED)
    assert_colour(out.getpixel((1500, 700)), WHITE)
    assert converted
    big = [(mode, size) for mode, size in converted if size[0] * size[1] > 4200 * 3000 // 4]
    assert not big


@pytest.mark.parametrize(
    ("mode", "value", "fmt", "expected"),
    [
        pytest.param("I;16", 32896, "PNG", 128, id="16-bit-PNG"),
        pytest.param("I;16", 65535, "TIFF", 255, id="16-bit-TIFF"),
        pytest.param("I", 50_000, "TIFF", 128, id="32-bit-TIFF"),
        pytest.param("F", 0.5, "TIFF", 128, id="float-TIFF"),
        pytest.param("1", 1, "PNG", 255, id="1-bit"),
        pytest.param("LA", (60, 255), "PNG", 60, id="gray-alpha"),
    ],
)
def test_big_wide_mode_images_end_up_valid_jpegs(
    mode: str, value: Any, fmt: str, expected: int
) -> None:
    img = Image.new(mode, (4200, 3000), value)
    if mode == "I":  # a range beyond 16 bits: scaled from 0..100000 to 0..255
        ImageDraw.Draw(img).rectangle((0, 0, 99, 99), fill=0)
        ImageDraw.Draw(img).rectangle((100, 0, 199, 99), fill=100_000)
    out = decode(normalize(encode(img, fmt)))

    assert out.size == (2048, 1463)
    pixel = out.getpixel((1500, 1000))
    assert isinstance(pixel, tuple)
    assert all(abs(channel - expected) <= 2 for channel in pixel), pixel


def test_big_image_with_exif_rotation_is_rotated_after_reducing() -> None:
    img = quadrants((4200, 3000)).convert("RGBA")
    out = decode(normalize(encode(img, "PNG", exif=exif_with_orientation(6))))

    # orientation 6: rotate 90° clockwise, so the top-left (red) goes to the top-right
    assert out.size == (1463, 2048)
    assert_colour(out.getpixel((1200, 300)), RED)
    assert_colour(out.getpixel((300, 300)), WHITE)  # the bottom-left quadrant
    assert_colour(out.getpixel((1200, 1800)), GREEN)


def test_strips_reduce_exactly_like_the_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.images import normalize as module

    monkeypatch.setattr(module, "_STRIP_BYTES", 4 * 301 * 7)  # 7 rows: rounded to 6
    rng = random.Random(1)
    img = Image.frombytes("P", (301, 200), rng.randbytes(301 * 200))
    img.putpalette(rng.randbytes(768))
    img.info["transparency"] = bytes(rng.randrange(256) for _ in range(256))

    with img.convert("RGBA") as rgba, rgba.convert("RGBa") as whole:
        expected = whole.reduce(3)
    actual = module._reduce(img, 3)

    assert actual.mode == "RGBa"
    assert actual.tobytes() == expected.tobytes()


def test_every_reject_reason_has_texts_and_a_failure_kind() -> None:
    for reason in RejectReason:
        assert f"reject_{reason.value}" in MESSAGES
        assert f"fail_image_{reason.value}" in MESSAGES
        assert FailureKind(f"image_{reason.value}")


def test_memory_refusal_says_why_in_logs() -> None:
    error = rejected(png_header(9400, 9400, 16, 0))
    assert error.detail is not None and "I;16" in error.detail and "MiB" in error.detail
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reason, copy.width, copy.detail) == (error.reason, 9400, error.detail)


# --------------------------------------------------------------------------- decode budget


async def test_budget_waits_in_order_and_caps_at_capacity() -> None:
    budget = DecodeBudget(100)
    order: list[str] = []

    async def use(name: str, amount: int, hold: asyncio.Event) -> None:
        taken = await budget.acquire(amount)
        order.append(name)
        assert budget.in_use <= budget.capacity
        await hold.wait()
        budget.release(taken)

    gates = {name: asyncio.Event() for name in "abcd"}
    tasks = [
        asyncio.create_task(use("a", 60, gates["a"])),
        asyncio.create_task(use("b", 500, gates["b"])),  # capped: runs alone
        asyncio.create_task(use("c", 10, gates["c"])),  # fits now, but waits behind b
    ]
    await asyncio.sleep(0)
    assert order == ["a"]
    gates["a"].set()
    await asyncio.sleep(0.01)
    assert order == ["a", "b"] and budget.in_use == 100
    gates["b"].set()
    gates["c"].set()
    await asyncio.gather(*tasks)
    assert order == ["a", "b", "c"]
    assert budget.in_use == 0 and budget.peak == 100


async def test_budget_cancelled_waiter_lets_others_in() -> None:
    budget = DecodeBudget(100)
    first = await budget.acquire(80)
    big = asyncio.create_task(budget.acquire(50))
    small = asyncio.create_task(budget.acquire(20))
    await asyncio.sleep(0)
    assert not small.done()  # behind big
    big.cancel()
    taken = await asyncio.wait_for(small, 1.0)  # granted once big gave up its place
    assert big.cancelled()
    assert (taken, budget.in_use) == (20, 100)
    budget.release(first)
    budget.release(taken)
    assert budget.in_use == 0


class Files:
    """FileSource double: the bytes registered under each file id."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    async def download(self, file_id: str) -> bytearray:
        return bytearray(self.files[file_id])


async def test_intake_decodes_within_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    big = encode(Image.new("RGBA", (1000, 800), (*RED, 255)), "PNG")
    small = encode(quadrants(), "JPEG")
    limits = ImageLimits(max_decoded_bytes=decode_cost(bytearray(big)))
    files = Files({"big1": big, "big2": big, "small": small})
    intake = ImageIntake(
        cast(Any, files), cast(Any, None), cast(Any, None), model="m", limits=limits
    )
    running: list[int] = []
    most = 0
    original = normalize

    def counting(data: bytes | bytearray, lim: ImageLimits) -> NormalizedImage:
        nonlocal most
        running.append(1)
        most = max(most, len(running))
        try:
            time.sleep(0.05)
            return original(data, lim)
        finally:
            running.pop()

    monkeypatch.setattr(intake_module, "normalize", counting)
    images = [InputImage(file_id=name, unique_id=name) for name in ("big1", "big2")]

    results = await asyncio.gather(*(intake._check(image) for image in images))

    assert [r.width for r in results] == [1000, 1000]
    assert most == 1  # each one takes the whole budget: one after the other
    assert intake.budget.peak == limits.max_decoded_bytes
    assert intake.budget.in_use == 0
    # a file above the budget is refused from its header and reserves nothing
    files.files["huge"] = png_header(9400, 9400, 16, 0)
    with pytest.raises(ImageRejected) as info:
        await intake._check(InputImage(file_id="huge", unique_id="huge"))
    assert info.value.reason is RejectReason.TOO_MANY_PIXELS
    assert intake.budget.in_use == 0


class FakeUploads:
    """UploadCache and DashScope upload doubles: remembers uploads in memory."""

    def __init__(self) -> None:
        self.cache: dict[str, tuple[str, float]] = {}
        self.count = 0

    async def get(self, model: str, unique_id: str, valid_after: float) -> tuple[str, float] | None:
        hit = self.cache.get(unique_id)
        return hit if hit and hit[1] > valid_after else None

    async def remember(self, model: str, unique_id: str, url: str, expires_at: float) -> None:
        self.cache[unique_id] = (url, expires_at)

    async def get_upload_policy(self, model: str | None = None) -> Any:
        class Policy:
            def valid_for(self, margin: float = 30.0) -> bool:
                return True

        return Policy()

    async def upload(self, policy: Any, data: bytes, name: str) -> str:
        await asyncio.sleep(0.05)  # on the network
        self.count += 1
        return f"oss://{self.count}"


async def test_a_file_checked_while_its_copy_was_uploaded_is_not_uploaded_again() -> None:
    """Two group members send the same garment; the second check ends after the first
    upload: one upload."""
    release_second = asyncio.Event()
    downloads = 0

    class SlowSecond:
        async def download(self, file_id: str) -> bytearray:
            nonlocal downloads
            downloads += 1
            if downloads == 2:
                await release_second.wait()
            return bytearray(encode(quadrants(), "JPEG"))

    fake = FakeUploads()
    intake = ImageIntake(
        cast(Any, SlowSecond()), cast(Any, fake), cast(Any, fake), model="m", limits=DEFAULT
    )
    garment = InputImage(file_id="g", unique_id="g")
    first = await intake.accept(garment)
    second = asyncio.create_task(intake.accept(garment))
    await asyncio.sleep(0.01)
    assert downloads == 2  # the second check started while the first upload was on the wire
    await asyncio.wait(list(intake._background))  # the first upload is done
    assert fake.count == 1 and ("m", "g") not in intake._in_flight
    release_second.set()

    assert first.url is None  # checked; uploading in the background
    assert (await second).url == "oss://1"  # the first upload, reused
    assert fake.count == 1
    await intake.close()
