#!/usr/bin/env python3
"""A corpus of hostile images: small on disk (all <= 20 MB, Telegram's limit for bots), huge
once decoded. Used by bench/hostile.py; run alone to write the files:

    .venv/bin/python bench/hostile_images.py DIR

Most files are flat (one colour), so they compress to almost nothing. PNG, BMP and GIF files
are written by hand, row by row, so that making them takes little memory; the others are
made with Pillow (or pillow-heif).
"""

from __future__ import annotations

import io
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pillow_heif
from PIL import Image

SIDE = 9400  # 88.4 MP, just under Pillow's decompression-bomb warning (89.5 MP)
MAX_FILE = 20 * 1024 * 1024


# --------------------------------------------------------------------------- PNG


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def _png(
    width: int,
    height: int,
    bit_depth: int,
    colour_type: int,
    row: bytes,
    *,
    extra: bytes = b"",
    rows: int | None = None,
) -> bytes:
    """A PNG whose rows are all ``row`` (filter byte 0 prepended); ``rows`` limits how many
    are actually written (a truncated file)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    comp = zlib.compressobj(9)
    parts = [comp.compress(b"\x00" + row) for _ in range(height if rows is None else rows)]
    parts.append(comp.flush())
    body = b"".join(parts)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + extra
        + _chunk(b"IDAT", body)
        + _chunk(b"IEND", b"")
    )


def _png_kind(
    bit_depth: int, colour_type: int, samples: int, size: tuple[int, int] = (SIDE, SIDE)
) -> Callable[[], bytes]:
    def make() -> bytes:
        sample = b"\x80" * (bit_depth // 8)
        return _png(size[0], size[1], bit_depth, colour_type, sample * samples * size[0])

    return make


def png_palette(trns: bool) -> Callable[[], bytes]:
    def make() -> bytes:
        plte = _chunk(b"PLTE", bytes(range(256)) * 3)
        extra = plte + (_chunk(b"tRNS", bytes(range(256))) if trns else b"")
        return _png(SIDE, SIDE, 8, 3, bytes([7]) * SIDE, extra=extra)

    return make


def png_bilevel() -> bytes:
    return _png(SIDE, SIDE, 1, 0, b"\x55" * ((SIDE + 7) // 8))


def png_bomb_header() -> bytes:
    """A 1x1 PNG whose header claims 100000x100000."""
    return _png(100_000, 100_000, 8, 0, b"\x00", rows=1)


def png_truncated() -> bytes:
    """An RGBA PNG 9400x9400 whose data stops after a tenth of the rows."""
    return _png(SIDE, SIDE, 8, 6, b"\x40" * 4 * SIDE, rows=SIDE // 10)


# --------------------------------------------------------------------------- others


def _save(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def tiff(mode: str, value: float, size: tuple[int, int] = (SIDE, SIDE)) -> Callable[[], bytes]:
    def make() -> bytes:
        with Image.new(mode, size, value) as img:
            return _save(img, "TIFF", compression="tiff_adobe_deflate")

    return make


def tiff_multipage() -> bytes:
    """Four 16-bit pages; only the first is ever decoded, but each is 177 MB."""
    with Image.new("I;16", (SIDE, SIDE), 1000) as page:
        return _save(
            page, "TIFF", compression="tiff_adobe_deflate", save_all=True, append_images=[page] * 3
        )


def tiff_rgba() -> bytes:
    with Image.new("RGBA", (SIDE, SIDE), (10, 200, 30, 128)) as img:
        return _save(img, "TIFF", compression="tiff_adobe_deflate")


def bmp_rle8() -> bytes:
    """An 8-bit RLE-compressed BMP (runs of 255 pixels): 88 MP in ~0.7 MB."""
    row = bytearray()
    left = SIDE
    while left:
        run = min(255, left)
        row += bytes([run, 3])
        left -= run
    row += b"\x00\x00"  # end of line
    pixels = bytes(row) * SIDE + b"\x00\x01"  # end of bitmap
    palette = b"".join(bytes([i, 255 - i, i // 2, 0]) for i in range(256))
    offset = 14 + 40 + len(palette)
    dib = struct.pack("<IiiHHIIiiII", 40, SIDE, SIDE, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + dib + palette + pixels


def webp(mode: str, size: tuple[int, int] = (SIDE, SIDE)) -> Callable[[], bytes]:
    def make() -> bytes:
        colour = (200, 30, 30, 128) if mode == "RGBA" else (200, 30, 30)
        with Image.new(mode, size, colour) as img:
            return _save(img, "WEBP", lossless=True, quality=0, method=0)

    return make


def gif_animated() -> bytes:
    """A 9400x9400 first frame, then 2000 one-pixel frames."""
    with Image.new("P", (SIDE, SIDE), 3) as img:
        img.putpalette(bytes(range(256)) * 3)
        first = _save(img, "GIF")
    with Image.new("P", (1, 1), 5) as dot:
        dot.putpalette(bytes(range(256)) * 3)
        tiny = _save(dot, "GIF")
    # Header (13 bytes) + global colour table, then optional extensions, then "," (image).
    table = 3 * 2 ** ((tiny[10] & 7) + 1) if tiny[10] & 0x80 else 0
    start = tiny.index(b",", 13 + table)
    frame = tiny[start:-1]  # image descriptor .. image data, without the ";" trailer
    gce = b"\x21\xf9\x04\x00\x01\x00\x00\x00"  # 10 ms per frame
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    head_end = 13 + (3 * 2 ** ((first[10] & 7) + 1) if first[10] & 0x80 else 0)
    return first[:head_end] + loop + first[head_end:-1] + (gce + frame) * 2000 + b";"


def jpeg(mode: str, side: int | tuple[int, int], **params: object) -> Callable[[], bytes]:
    def make() -> bytes:
        colour: tuple[int, ...] = (10, 80, 160, 20) if mode == "CMYK" else (200, 120, 40)
        size = side if isinstance(side, tuple) else (side, side)
        with Image.new(mode, size, colour) as img:
            return _save(img, "JPEG", quality=90, **params)

    return make


def jpeg_multiscan(side: int) -> Callable[[], bytes]:
    """A sequential (baseline) gray JPEG in three scans, one per component: libjpeg keeps
    all DCT coefficients of a file like that, as for a progressive one. Written by hand:
    one-symbol Huffman tables, so every 8x8 block (DC difference 0, then end of block)
    takes 2 bits."""

    def segment(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload

    def make() -> bytes:
        blocks = (-(-side // 8)) ** 2  # 8x8 blocks per component
        scan = bytes(-(-blocks * 2 // 8))  # all-zero bits
        one_code = bytes([1] + [0] * 15) + b"\x00"  # a single 1-bit code for symbol 0
        parts = [
            b"\xff\xd8",
            segment(0xDB, b"\x00" + bytes([1] * 64)),
            segment(
                0xC0,
                struct.pack(">BHHB", 8, side, side, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00",
            ),
            segment(0xC4, b"\x00" + one_code + b"\x10" + one_code),
        ]
        for component in (1, 2, 3):
            parts += [segment(0xDA, bytes([1, component, 0x00, 0, 63, 0])), scan]
        parts.append(b"\xff\xd9")
        return b"".join(parts)

    return make


def heic(size: tuple[int, int]) -> Callable[[], bytes]:
    def make() -> bytes:
        with Image.new("RGB", size, (90, 140, 200)) as img:
            buf = io.BytesIO()
            pillow_heif.from_pillow(img).save(buf, format="HEIF", quality=50)
            return buf.getvalue()

    return make


# name -> (what it is, maker)
CORPUS: dict[str, tuple[str, Callable[[], bytes]]] = {
    "png_gray16.png": ("PNG 16-bit gray", _png_kind(16, 0, 1)),
    "png_rgb16.png": ("PNG 16-bit RGB", _png_kind(16, 2, 3)),
    "png_rgba16.png": ("PNG 16-bit RGBA", _png_kind(16, 6, 4)),
    "png_la16.png": ("PNG 16-bit gray+alpha", _png_kind(16, 4, 2)),
    "png_gray8.png": ("PNG 8-bit gray", _png_kind(8, 0, 1)),
    "png_rgb8.png": ("PNG 8-bit RGB", _png_kind(8, 2, 3)),
    "png_rgba8.png": ("PNG 8-bit RGBA", _png_kind(8, 6, 4)),
    "png_la8.png": ("PNG 8-bit gray+alpha", _png_kind(8, 4, 2)),
    "png_palette.png": ("PNG palette", png_palette(trns=False)),
    "png_palette_trns.png": ("PNG palette + tRNS", png_palette(trns=True)),
    "png_1bit.png": ("PNG 1-bit", png_bilevel),
    "png_truncated.png": ("PNG RGBA, data cut at 10%", png_truncated),
    "png_bomb_header.png": ("PNG 1x1 claiming 100000x100000", png_bomb_header),
    "tiff_i16.tif": ("TIFF 16-bit gray", tiff("I;16", 1000)),
    "tiff_i32.tif": ("TIFF 32-bit int gray", tiff("I", 70000)),
    "tiff_f32.tif": ("TIFF 32-bit float gray", tiff("F", 0.5)),
    "tiff_rgba.tif": ("TIFF RGBA", tiff_rgba),
    "tiff_multipage.tif": ("TIFF 4 pages 16-bit", tiff_multipage),
    "bmp_rle8.bmp": ("BMP 8-bit RLE", bmp_rle8),
    "webp_rgb.webp": ("WEBP lossless RGB", webp("RGB")),
    "webp_rgba.webp": ("WEBP lossless RGBA", webp("RGBA")),
    "gif_2000_frames.gif": ("GIF 2001 frames", gif_animated),
    "heic_48mp.heic": ("HEIC 8064x6048", heic((8064, 6048))),
    "jpeg_cmyk.jpg": ("JPEG CMYK", jpeg("CMYK", SIDE)),
    "jpeg_progressive.jpg": ("JPEG progressive", jpeg("RGB", SIDE, progressive=True)),
    "jpeg_progressive_444.jpg": (
        "JPEG progressive 4:4:4",
        jpeg("RGB", SIDE, progressive=True, subsampling="4:4:4"),
    ),
    "jpeg_multiscan.jpg": ("JPEG sequential, 3 scans", jpeg_multiscan(SIDE)),
    "jpeg_12000.jpg": ("JPEG progressive 12000x12000", jpeg("RGB", 12000, progressive=True)),
    # Big but legitimate: near the limits, accepted.
    "heic_24mp.heic": ("HEIC 6048x4032 (iPhone 24 MP)", heic((6048, 4032))),
    "webp_12mp.webp": ("WEBP 4000x3000", webp("RGB", (4000, 3000))),
    "png_rgba_12mp.png": ("PNG RGBA 4000x3000", _png_kind(8, 6, 4, (4000, 3000))),
    "png_rgba_24mp.png": ("PNG RGBA 6000x4000", _png_kind(8, 6, 4, (6000, 4000))),
    "png_gray16_24mp.png": ("PNG 16-bit gray 6000x4000", _png_kind(16, 0, 1, (6000, 4000))),
    "tiff_f32_24mp.tif": ("TIFF float 6000x4000", tiff("F", 0.25, (6000, 4000))),
    "jpeg_progressive_48mp.jpg": (
        "JPEG progressive 8000x6000",
        jpeg("RGB", (8000, 6000), progressive=True),
    ),
    "jpeg_48mp.jpg": ("JPEG 8000x6000", jpeg("RGB", (8000, 6000))),
}


def build(directory: Path, names: list[str] | None = None) -> Iterator[tuple[Path, str]]:
    """Writes the corpus files missing from ``directory``; yields (path, description)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, (what, make) in CORPUS.items():
        if names and name not in names:
            continue
        path = directory / name
        if not path.exists():
            data = make()
            assert len(data) <= MAX_FILE, (name, len(data))
            tmp = path.with_suffix(".part")
            tmp.write_bytes(data)
            tmp.rename(path)
        yield path, what


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for path, what in build(Path(sys.argv[1]), sys.argv[2:]):
        print(f"{path.stat().st_size / 1024:10.0f} KB  {path.name:28} {what}")
