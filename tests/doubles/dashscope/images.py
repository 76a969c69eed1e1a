"""Images: test images, aitryon's input checks, and what the double "generates".

Input rules for every image field: 5 KB–5 MB, 150–4096 px per side, jpg/png/bmp/heic/webp
(dashscope-api.md §4, gotcha 9). The try-on "result" is the person image tinted with a colour
derived from the task id; the refiner's is the coarse image at twice the size; parsing crops
are cut from the person image at a plausible box per garment (§7).
"""

from __future__ import annotations

import contextlib
import hashlib
import io

from PIL import Image, ImageDraw

from tests.doubles.dashscope.wire import (
    IMAGE_FORMATS,
    MAX_IMAGE_BYTES,
    MAX_SIDE,
    MIN_IMAGE_BYTES,
    MIN_SIDE,
    Rejected,
)


def make_image(width: int, height: int, seed: str = "", fmt: str = "JPEG") -> bytes:
    """A noisy test image (noise keeps JPEGs above DashScope's 5 KB minimum)."""
    digest = hashlib.sha256(seed.encode()).digest()
    image = Image.effect_noise((width, height), 60).convert("RGB")
    image = Image.blend(image, Image.new("RGB", (width, height), tuple(digest[:3])), 0.5)
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def register_heif() -> None:
    with contextlib.suppress(ImportError):
        import pillow_heif

        pillow_heif.register_heif_opener()


def inspect(data: bytes) -> tuple[int, int]:
    """Applies aitryon's input rules; returns (width, height) or raises Rejected."""
    if not MIN_IMAGE_BYTES <= len(data) <= MAX_IMAGE_BYTES:
        raise Rejected("InvalidInputLength")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in IMAGE_FORMATS:
                raise Rejected("InvalidURL")
            image.load()
            width, height = image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        raise Rejected("InvalidInputLength") from None
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE:
        raise Rejected("InvalidInputLength")
    return width, height


def inspect_all(blobs: list[bytes]) -> list[tuple[int, int]]:
    register_heif()
    return [inspect(blob) for blob in blobs]


def render_result(task_id: str, person: bytes, size: tuple[int, int]) -> bytes:
    """The 'try-on': the person image tinted with a colour derived from the task id."""
    tint = tuple(hashlib.sha256(task_id.encode()).digest()[:3])
    try:
        with Image.open(io.BytesIO(person)) as source:
            base = source.convert("RGB").resize(size)
    except (OSError, ValueError):
        base = Image.new("RGB", size, (128, 128, 128))
    result = Image.blend(base, Image.new("RGB", size, tint), 0.35)
    ImageDraw.Draw(result).text((10, 10), task_id, fill=(255, 255, 255))
    out = io.BytesIO()
    result.save(out, "JPEG", quality=85)
    return out.getvalue()


def render_refined(task_id: str, coarse: bytes) -> bytes:
    """The refiner's result: the coarse image at twice the size (at most 4096 px a side)."""
    with Image.open(io.BytesIO(coarse)) as source:
        image = source.convert("RGB")
    scale = min(2.0, MAX_SIDE / max(image.size))
    size = (round(image.width * scale), round(image.height * scale))
    result = image.resize(size)
    ImageDraw.Draw(result).text((10, 10), f"refined {task_id}", fill=(255, 255, 0))
    out = io.BytesIO()
    result.save(out, "JPEG", quality=90)
    return out.getvalue()


# Where each garment sits in a standing person's picture, as fractions of (width, height).
GARMENT_BOXES = {
    "upper": (0.2, 0.2, 0.8, 0.55),
    "lower": (0.25, 0.5, 0.75, 0.95),
    "dress": (0.2, 0.2, 0.8, 0.9),
}


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def garment_box(size: tuple[int, int], garment: str) -> list[int]:
    """``[x1, y1, x2, y2]`` from the top-left, as the parsing model's ``bbox``."""
    width, height = size
    left, top, right, bottom = GARMENT_BOXES[garment]
    return [round(left * width), round(top * height), round(right * width), round(bottom * height)]


def render_parsing(person: bytes, box: list[int]) -> tuple[bytes, bytes]:
    """(parsing_img, crop_img): an RGBA png of the whole picture, transparent outside the
    garment, and an RGB png of the garment's box (what try-on takes as a garment)."""
    with Image.open(io.BytesIO(person)) as source:
        image = source.convert("RGB")
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    cutout = image.convert("RGBA")
    cutout.putalpha(mask)
    parsing, crop = io.BytesIO(), io.BytesIO()
    cutout.save(parsing, "PNG")
    image.crop((box[0], box[1], box[2], box[3])).save(crop, "PNG")
    return parsing.getvalue(), crop.getvalue()
