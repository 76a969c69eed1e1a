"""Validation and normalisation of user images before they are uploaded to DashScope.

aitryon-plus accepts 5 KB–5 MB files with every side in 150..4096 px. Telegram users send
anything from compressed photos to 48 MP iPhone HEICs, CMYK JPEGs, transparent PNGs and
animated GIFs, so every input goes through :func:`normalize`, which always produces a
baseline RGB JPEG within those limits or raises :class:`ImageRejected` with a reason the
handlers can explain to the user.

:func:`normalize` is synchronous and CPU-bound; callers run it in a worker thread.
"""

from __future__ import annotations

import ctypes
import enum
import io
import struct
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

import pillow_heif
from PIL import ExifTags, Image, ImageCms, ImageFile, UnidentifiedImageError

__all__ = [
    "MAX_DOWNLOAD_BYTES",
    "ImageLimits",
    "ImageRejected",
    "NormalizedImage",
    "RejectReason",
    "check_file_size",
    "decode_cost",
    "normalize",
    "sniff_is_image",
]

# Registers the "HEIF" format with Pillow (iPhone HEIC photos). AVIF is native in Pillow.
pillow_heif.register_heif_opener()

_M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter number


def _return_freed_images_to_the_os() -> None:
    """Make glibc serve every allocation of 1 MiB or more with its own mmap.

    By default glibc raises its mmap threshold (up to 32 MiB) each time such a block is
    freed; after that, image buffers come from per-thread heaps (normalize() runs in worker
    threads) that keep freed memory resident, and the peak RSS grows far above what is in
    use: the whole bench/hostile.py corpus at once peaked at 380-460 MB instead of 210 MB.
    A fixed threshold stops that adaptation, so a freed image goes back to the OS at once.
    No-op where mallopt() is missing (not glibc).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mallopt(_M_MMAP_THRESHOLD, 1024 * 1024)


_return_freed_images_to_the_os()

MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
"""Telegram Bot API getFile refuses files larger than this."""

# DashScope's hard per-side limits (reference doc, gotcha 9).
_API_MIN_SIDE = 150
_API_MAX_SIDE = 4096

# Only these decoders are ever tried. This keeps e.g. EPS (Ghostscript), PSD or ICO off
# the attack surface. The JPEG opener also returns MPO images (JPEGs with a multi-picture
# index, common from phone cameras), which decode exactly like JPEG.
_ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF", "AVIF")
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})

_JPEG_QUALITY = 92
_FALLBACK_QUALITIES = (85, 75, 65, 55)
_DOWNSCALED_QUALITY = 75
_DOWNSCALE_STEP = 0.8
_OPTIMIZE_MAX_GAIN = 1.2
_MAX_COMMENT_BYTES = 65_533  # payload limit of one JPEG COM segment
_WHITE = (255, 255, 255)

# Exceptions Pillow and its plugins raise for malformed input. Image.open() turns most
# parser errors into UnidentifiedImageError (an OSError); decoding raises OSError
# ("image file is truncated", "broken data stream"), SyntaxError, ValueError, EOFError,
# struct.error, ... pillow_heif maps libheif errors to these as well.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    EOFError,
    RuntimeError,
    OverflowError,
    ZeroDivisionError,
    struct.error,
)
_BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)

# Python < 3.14 keeps warning filters process-global and catch_warnings() is not
# thread-safe, so concurrent normalize() calls take turns while the filter is patched.
# Only Image.open() (header parsing) runs under the lock, never the decode.
_OPEN_LOCK = threading.Lock()

_SRGB_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


class RejectReason(enum.Enum):
    FILE_TOO_LARGE = "file_too_large"
    UNSUPPORTED_FORMAT = "unsupported_format"
    CORRUPT = "corrupt"
    TOO_SMALL = "too_small"
    TOO_MANY_PIXELS = "too_many_pixels"
    """Too many pixels, or too many bytes once decoded (16-bit, float, alpha, WEBP...):
    ``detail`` says which."""


class ImageRejected(Exception):
    """The image cannot be used; ``reason`` says why.

    ``width``/``height`` are set when known. For ``TOO_SMALL`` they are the size of the
    image as displayed (after EXIF rotation, before downscaling). ``detail`` is for logs.
    """

    def __init__(
        self,
        reason: RejectReason,
        width: int | None = None,
        height: int | None = None,
        detail: str | None = None,
    ) -> None:
        self.reason = reason
        self.width = width
        self.height = height
        self.detail = detail
        size = f" ({width}x{height})" if width is not None and height is not None else ""
        more = f": {detail}" if detail else ""
        super().__init__(f"image rejected: {reason.value}{size}{more}")

    def __reduce__(
        self,
    ) -> tuple[type[ImageRejected], tuple[RejectReason, int | None, int | None, str | None]]:
        # Survives pickling, e.g. if normalize() is ever moved to a process pool.
        return type(self), (self.reason, self.width, self.height, self.detail)


@dataclass(frozen=True)
class ImageLimits:
    """Limits for :func:`normalize`; the defaults satisfy aitryon-plus."""

    max_side: int = 2048
    min_side: int = _API_MIN_SIDE
    min_bytes: int = 5 * 1024
    max_bytes: int = 5 * 1024 * 1024
    max_pixels: int = 100_000_000
    max_decoded_bytes: int = 192 * 1024 * 1024
    """Most memory one image may take while it is normalised, as estimated from its header
    by :func:`decode_cost` (pixels x bytes per pixel of the decoded mode, plus what the
    decoder and the conversion need). Above it: ``TOO_MANY_PIXELS``, before decoding."""

    def __post_init__(self) -> None:
        if not _API_MIN_SIDE <= self.max_side <= _API_MAX_SIDE:
            raise ValueError(f"max_side must be in {_API_MIN_SIDE}..{_API_MAX_SIDE}")
        if not 1 <= self.min_side <= self.max_side:
            raise ValueError("min_side must be in 1..max_side")
        if not 0 <= self.min_bytes <= _MAX_COMMENT_BYTES:
            raise ValueError(f"min_bytes must be in 0..{_MAX_COMMENT_BYTES}")
        if self.max_bytes < self.min_bytes + 1024:
            raise ValueError("max_bytes must exceed min_bytes by at least 1 KiB")
        if self.max_pixels < 1:
            raise ValueError("max_pixels must be positive")
        if self.max_decoded_bytes < 1:
            raise ValueError("max_decoded_bytes must be positive")


@dataclass(frozen=True)
class NormalizedImage:
    data: bytes
    """A baseline RGB JPEG without metadata."""
    width: int
    height: int


def check_file_size(file_size: int | None, limit: int = MAX_DOWNLOAD_BYTES) -> None:
    """Reject a file by its announced size, before downloading it.

    ``None`` (Telegram did not say) is accepted; the download itself is capped elsewhere.
    """
    if file_size is not None and file_size > limit:
        raise ImageRejected(RejectReason.FILE_TOO_LARGE)


# ISO-BMFF brands of still images: HEIF/HEIC (incl. sequences) and AVIF.
_HEIF_MAJOR_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
    | {b"mif1", b"mif2", b"msf1", b"avif", b"avis"}
)
_HEIF_COMPATIBLE_BRANDS = frozenset({b"mif1", b"mif2", b"heic", b"heix", b"avif"})
# BITMAPCOREHEADER, BITMAPINFOHEADER, the two Adobe variants, OS/2 v2, V4 and V5.
_BMP_DIB_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})


def sniff_is_image(head: bytes | bytearray) -> bool:
    """Whether ``head`` (the first bytes of a file; 32 are plenty) starts like an image.

    Only magic bytes count: Telegram's mime type and file name come from the sender.
    """
    head = bytes(head[:64])  # a small copy: bytearray slices are unhashable
    if head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):  # TIFF, BigTIFF
        return True
    if head.startswith(b"BM"):
        if len(head) < 18:
            return len(head) >= 2
        (dib_size,) = struct.unpack_from("<I", head, 14)
        return dib_size in _BMP_DIB_HEADER_SIZES
    if head[4:8] == b"ftyp" and len(head) >= 12:
        if head[8:12] in _HEIF_MAJOR_BRANDS:
            return True
        (box_size,) = struct.unpack_from(">I", head, 0)
        end = min(len(head), box_size)
        # major brand, minor version, then compatible brands up to the end of the box
        return any(head[i : i + 4] in _HEIF_COMPATIBLE_BRANDS for i in range(16, end - 3, 4))
    return False


def decode_cost(data: bytes | bytearray, limits: ImageLimits = ImageLimits()) -> int:
    """Estimated peak memory in bytes that :func:`normalize` takes for ``data``.

    Reads the header only. Raises :class:`ImageRejected` for what the header already shows
    (unknown format, damaged header, too many pixels or decoded bytes), exactly as
    :func:`normalize` would; the result is at most ``limits.max_decoded_bytes``.
    """
    with _open(data) as img:
        try:
            return _plan(img, limits, _input_bytes(data)).cost
        except ImageRejected:
            raise
        except _BOMB_ERRORS:
            raise ImageRejected(RejectReason.TOO_MANY_PIXELS, *img.size) from None
        except _DECODE_ERRORS:
            raise ImageRejected(RejectReason.CORRUPT, *img.size) from None


def normalize(data: bytes | bytearray, limits: ImageLimits = ImageLimits()) -> NormalizedImage:
    """Decode ``data`` and re-encode it as a JPEG that DashScope accepts.

    Steps: refuse decompression bombs and images that would take more than
    ``limits.max_decoded_bytes`` from the header, decode (JPEGs at a reduced DCT scale when
    that is still large enough), reduce big images without a full-size converted copy,
    apply EXIF orientation, take the first frame of animations, convert to RGB (alpha over
    white, colour profile to sRGB), fit into ``limits.max_side`` and encode within
    ``limits.min_bytes..limits.max_bytes``.
    Raises :class:`ImageRejected`; no Pillow exception escapes.
    """
    with _open(data) as img:
        try:
            plan = _plan(img, limits, _input_bytes(data))
            target, orientation = _decode(img, plan, limits)
        except ImageRejected:
            raise
        except _BOMB_ERRORS:
            raise ImageRejected(RejectReason.TOO_MANY_PIXELS, *img.size) from None
        except _DECODE_ERRORS:
            raise ImageRejected(RejectReason.CORRUPT, *img.size) from None
        try:
            return _convert_and_encode(img, target, orientation, limits, plan.reduce_factor)
        except (OSError, ValueError):
            # The pixels are already in memory, so this is a mode Pillow cannot convert
            # (e.g. LAB TIFF). Other exceptions here would be bugs and are not masked.
            raise ImageRejected(RejectReason.UNSUPPORTED_FORMAT, *img.size) from None


def _input_bytes(data: bytes | bytearray) -> int:
    """The compressed input in memory while it is decoded: BytesIO copies a bytearray."""
    return len(data) * (2 if isinstance(data, bytearray) else 1)


@contextmanager
def _open(data: bytes | bytearray) -> Iterator[ImageFile.ImageFile]:
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            # Pillow warns above Image.MAX_IMAGE_PIXELS (~89 MP) and raises above twice
            # that; both become our TOO_MANY_PIXELS instead of a log line or a crash.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=_ALLOWED_FORMATS)
    except _BOMB_ERRORS:
        raise ImageRejected(RejectReason.TOO_MANY_PIXELS) from None
    except UnidentifiedImageError:
        # Known magic bytes that no decoder could parse means a damaged header.
        reason = (
            RejectReason.CORRUPT if sniff_is_image(data[:32]) else RejectReason.UNSUPPORTED_FORMAT
        )
        raise ImageRejected(reason) from None
    except _DECODE_ERRORS:
        raise ImageRejected(RejectReason.CORRUPT) from None
    try:
        yield img
    finally:
        img.close()


# Non-JPEG images above this many pixels are reduced by an integer factor (Image.reduce, a
# box filter) straight after decoding, converting wide or transparent modes strip by strip,
# so no full-size converted copy exists. Smaller ones take the plain path.
_REDUCE_ABOVE_PIXELS = 4_000_000
# The reduction resize(reducing_gap=3.0) would make is used when its result stays below
# this; bigger images are reduced as far as the target size allows.
_GENTLE_REDUCED_BYTES = 64 * 1024 * 1024
_STRIP_BYTES = 4 * 1024 * 1024  # converted bytes per strip
# Memory a decoder needs besides the decoded image, in bytes per pixel, as measured with
# bench/hostile.py: libwebp's canvas, its frame buffer and the frame bytes handed to Pillow;
# libheif's YUV planes and RGB buffer; Pillow's Python BMP RLE decoder's bytearrays.
_DECODER_BYTES_PER_PIXEL = {"WEBP": 12.5, "HEIF": 3.5, "AVIF": 3.5, "bmp_rle": 2.0}
# Modes Image.reduce() handles without a conversion or a premultiplied copy.
_DIRECT_MODES = frozenset({"L", "RGB", "CMYK", "I", "F"})


# What shows an image stored with EXIF orientation 2..8 upright (as ImageOps.exif_transpose).
_TRANSPOSITIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class _Plan:
    cost: int
    """Estimated peak bytes: compressed input, decoder, decoded pixels, conversions."""
    jpeg_target: tuple[int, int] | None
    """JPEG only: the displayed target size, with the draft scale already requested."""
    jpeg_orientation: int
    reduce_factor: int
    """Non-JPEG only: reduce by this right after decoding (1: do not)."""


def _bytes_per_pixel(mode: str) -> int:
    """How many bytes Pillow stores per pixel (RGB and LA take 4, like RGBA)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def _jpeg_first_scan_components(img: ImageFile.ImageFile) -> int | None:
    """How many components the first scan (SOS) of a JPEG holds, from its marker segments."""
    fp = img.fp
    if fp is None:
        return None
    position = fp.tell()
    try:
        fp.seek(2)  # after SOI
        while byte := fp.read(1):
            if byte != b"\xff":
                continue
            marker = fp.read(1)
            while marker == b"\xff":  # fill bytes
                marker = fp.read(1)
            if not marker:
                return None
            if marker[0] in (0x01, 0xD8) or 0xD0 <= marker[0] <= 0xD7:
                continue  # no length
            length = int.from_bytes(fp.read(2), "big")
            if marker[0] == 0xDA:
                count = fp.read(1)
                return count[0] if count else None
            fp.seek(length - 2, io.SEEK_CUR)
        return None
    finally:
        fp.seek(position)


def _jpeg_coefficient_bytes(img: ImageFile.ImageFile) -> int:
    """A JPEG in several scans (progressive, or sequential with one scan per component)
    makes libjpeg keep every DCT coefficient of the whole image (2 bytes each) until the
    last scan, whatever the draft scale."""
    layers = cast("list[tuple[str, int, int, int]]", getattr(img, "layer", []))
    progressive = img.info.get("progressive") or img.info.get("progression")
    if not progressive:
        first_scan = _jpeg_first_scan_components(img)
        if first_scan is None or first_scan >= len(layers):
            return 0  # one scan: decoded row by row
    if not layers:
        return img.width * img.height * 3 * 2
    h_max = max(layer[1] for layer in layers) or 1
    v_max = max(layer[2] for layer in layers) or 1
    total = 0
    for _, h, v, _ in layers:
        blocks_w = -(-img.width * h // (8 * h_max))
        blocks_h = -(-img.height * v // (8 * v_max))
        total += blocks_w * blocks_h * 64 * 2
    return total


def _reduce_factor(width: int, height: int, target: tuple[int, int]) -> int:
    """The integer reduction for an image of ``width``x``height`` going to ``target``
    (stored orientation): the one Pillow's resize(reducing_gap=3.0) makes when the reduced
    image is small enough, else the largest that keeps ``target`` reachable."""
    if width * height <= _REDUCE_ABOVE_PIXELS:
        return 1
    ratio = min(width / target[0], height / target[1])
    gentle = max(1, int(ratio / _REDUCING_GAP))
    if -(-width // gentle) * -(-height // gentle) * 4 <= _GENTLE_REDUCED_BYTES:
        return gentle
    return max(1, int(ratio))


def _finish_cost(
    size: tuple[int, int], target: tuple[int, int], conversions: int, limits: ImageLimits
) -> int:
    """Memory for going from an image of ``size`` (not counted) to the encoded JPEG of
    ``target`` (either orientation): the resize (its one-dimensional pass and result), RGB
    or sRGB conversions at the target size and the encoder's output."""
    target_bytes = target[0] * target[1] * 4
    cost = conversions * target_bytes + 2 * min(limits.max_bytes, target_bytes)
    if sorted(size) != sorted(target):
        cost += max(target) * max(size) * 4 + target_bytes
    return cost


def _plan(img: ImageFile.ImageFile, limits: ImageLimits, data_size: int) -> _Plan:
    """Check the header and estimate the memory; for JPEGs, request the draft scale."""
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageRejected(RejectReason.CORRUPT, width, height)
    # Header size only, nothing decoded yet.
    if width * height > limits.max_pixels:
        raise ImageRejected(RejectReason.TOO_MANY_PIXELS, width, height)

    jpeg_target: tuple[int, int] | None = None
    orientation = 1
    factor = 1
    has_icc = int(bool(img.info.get("icc_profile")))
    if img.format in _JPEG_FORMATS:
        orientation = _exif_orientation(img)
        swaps_sides = orientation in (5, 6, 7, 8)
        shown_w, shown_h = (height, width) if swaps_sides else (width, height)
        jpeg_target = _fit(shown_w, shown_h, limits.max_side)
        if min(jpeg_target) < limits.min_side:
            raise ImageRejected(RejectReason.TOO_SMALL, shown_w, shown_h)
        coefficients = _jpeg_coefficient_bytes(img)  # of the full size: before the draft
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale. Accepting a result a little under
        # max_side (>= DRAFT_SLACK of it) lets a 6000x8000 photo decode at 1/4 (9 MB of
        # pixels) instead of 1/2 (36 MB): far less memory and time for no visible loss.
        # The draft size is in stored (pre-rotation) orientation. Nothing is decoded yet.
        want = tuple(max(limits.min_side, int(side * DRAFT_SLACK)) for side in jpeg_target)
        img.draft("RGB", (want[1], want[0]) if swaps_sides else (want[0], want[1]))
        decoded = img.width * img.height * _bytes_per_pixel(img.mode)
        conversions = int(img.mode != "RGB") + has_icc
        drafted = (img.height, img.width) if swaps_sides else img.size
        final = jpeg_target
        if drafted[0] < final[0] or drafted[1] < final[1]:
            final = drafted  # as _decode does: no resize
        after = decoded + _finish_cost(img.size, final, conversions, limits)
        work = max(coefficients + decoded, after)
    else:
        pixels = width * height
        decoded = pixels * _bytes_per_pixel(img.mode)
        codec = img.tile[0][0] if img.tile else ""
        extra = _DECODER_BYTES_PER_PIXEL.get(
            codec, _DECODER_BYTES_PER_PIXEL.get(img.format or "", 0)
        )
        decoding = decoded + round(pixels * extra)
        target = _fit(width, height, limits.max_side)
        factor = _reduce_factor(width, height, target)
        direct = img.mode in _DIRECT_MODES and not img.has_transparency_data
        # Formats whose EXIF orientation is only known (and applied, with a copy) later.
        rotated = img.format not in ("BMP", "GIF")
        if factor > 1 or pixels > _REDUCE_ABOVE_PIXELS:
            reduced_size = (-(-width // factor), -(-height // factor))
            reduced = reduced_size[0] * reduced_size[1] * 4
            if img.mode in ("I", "F"):
                # reduced, then scaled (a copy) to L, while the decoded image still exists
                reducing = decoded + (reduced if factor > 1 else 0) + reduced + reduced // 4
                reduced //= 4
            elif factor == 1 and direct:
                reducing, reduced = decoded, decoded  # used as it is
            else:
                # a converted strip and its reduction next to the decoded image
                reducing = decoded + 2 * _STRIP_BYTES + reduced
            conversions = 2 if not direct or img.mode in ("I", "F") else int(img.mode != "RGB")
            finish = _finish_cost(reduced_size, target, conversions + has_icc, limits)
            after = reduced + max(reduced if rotated else 0, finish)
            work = max(decoding, reducing, after)
        else:
            # full size: e.g. palette -> RGBA -> premultiplied RGBa for the resize
            copies = (0 if direct else 2) + rotated
            finish = _finish_cost(img.size, target, 2 + has_icc, limits)
            work = max(decoding, decoded + copies * pixels * 4 + finish)
    # The compressed bytes (and BytesIO's copy of a bytearray) stay in memory meanwhile.
    cost = data_size + work
    if cost > limits.max_decoded_bytes:
        mib = 1024 * 1024
        detail = (
            f"{img.format} {img.mode} needs ~{cost // mib} MiB to decode, "
            f"limit {limits.max_decoded_bytes // mib} MiB"
        )
        raise ImageRejected(RejectReason.TOO_MANY_PIXELS, width, height, detail)
    return _Plan(cost, jpeg_target, orientation, factor)


def _decode(
    img: ImageFile.ImageFile, plan: _Plan, limits: ImageLimits
) -> tuple[tuple[int, int], int]:
    """Decode the first frame; returns the final (displayed, downscaled) size and the EXIF
    orientation still to apply."""
    if plan.jpeg_target is not None:
        target = plan.jpeg_target
        swaps_sides = plan.jpeg_orientation in (5, 6, 7, 8)
        img.load()
        decoded = (img.height, img.width) if swaps_sides else img.size
        if decoded[0] < target[0] or decoded[1] < target[1]:
            target = _fit(*decoded, limits.max_side)
        return target, plan.jpeg_orientation

    # Some formats (PNG) only expose EXIF after decoding; the memory is bounded above.
    img.load()
    orientation = _exif_orientation(img)
    swaps_sides = orientation in (5, 6, 7, 8)
    width, height = img.size
    shown_w, shown_h = (height, width) if swaps_sides else (width, height)
    target = _fit(shown_w, shown_h, limits.max_side)
    if min(target) < limits.min_side:
        raise ImageRejected(RejectReason.TOO_SMALL, shown_w, shown_h)
    return target, orientation


def _convert_and_encode(
    img: Image.Image,
    size: tuple[int, int],
    orientation: int,
    limits: ImageLimits,
    reduce_factor: int = 1,
) -> NormalizedImage:
    icc_profile = img.info.get("icc_profile")
    if reduce_factor > 1 or img.width * img.height > _REDUCE_ABOVE_PIXELS:
        img = _replace(img, _reduce(img, reduce_factor))
    if orientation != 1:  # by the value read before: a reduced copy has no EXIF
        img = _replace(img, img.transpose(_TRANSPOSITIONS[orientation]))
    rgb = _to_rgb(img, size)  # frees the full-size decoded pixels as soon as it can
    try:
        if isinstance(icc_profile, bytes) and icc_profile:
            rgb = _replace(rgb, _to_srgb(rgb, icc_profile))
        rgb.info = {}  # no EXIF, ICC, comments or XMP in the output
        return _encode_within_limits(rgb, limits)
    finally:
        rgb.close()


def _reduce(img: Image.Image, factor: int) -> Image.Image:
    """``img`` reduced ``factor`` times (a box filter) in a mode the rest handles, without a
    full-size copy: L, RGB, CMYK, I and F reduce directly; other modes are converted strip
    by strip (strips of a multiple of ``factor`` rows reduce exactly like the whole)."""
    mode = img.mode
    if mode in ("I", "F"):
        scale_offset = _deep_gray_scale(img)
        if factor == 1:
            return _deep_gray_to_l(img, scale_offset)
        with img.reduce(factor) as small:
            return _deep_gray_to_l(small, scale_offset)
    convert: Callable[[Image.Image], Image.Image]
    if mode.startswith("I;16"):
        convert = _deep_gray_to_l
    elif mode in _DIRECT_MODES and not img.has_transparency_data:
        return img.reduce(factor) if factor > 1 else img
    elif img.has_transparency_data:  # premultiplied, so reducing does not bleed colour
        convert = _premultiplied
    elif mode == "1":
        convert = _converter("L")
    else:
        convert = _converter("RGB")  # P, YCbCr, ...; ValueError for e.g. LAB
    width, height = img.size
    rows = max(factor, _STRIP_BYTES // (4 * width) // factor * factor)
    out: Image.Image | None = None
    try:
        for top in range(0, height, rows):
            with img.crop((0, top, width, min(height, top + rows))) as strip:
                part = convert(strip)
            small = _replace(part, part.reduce(factor)) if factor > 1 else part
            with small:
                if out is None:
                    out = Image.new(small.mode, (-(-width // factor), -(-height // factor)))
                out.paste(small, (0, top // factor))
    except BaseException:
        if out is not None:
            out.close()
        raise
    assert out is not None
    return out


def _converter(mode: str) -> Callable[[Image.Image], Image.Image]:
    return lambda strip: strip.convert(mode)


def _premultiplied(img: Image.Image) -> Image.Image:
    if img.mode == "RGBa":
        return img.copy()
    if img.mode != "RGBA":
        with img.convert("RGBA") as rgba:
            return rgba.convert("RGBa")
    return img.convert("RGBa")


def _exif_orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
    except _DECODE_ERRORS:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


DRAFT_SLACK = 0.75
_REDUCING_GAP = 3.0  # resize() reduces first when it shrinks 3x or more: no visible loss


def _fit(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Size of a ``width``×``height`` image scaled down (never up) to fit max_side."""
    long_side = max(width, height)
    if long_side <= max_side:
        return width, height
    if width >= height:
        return max_side, max(1, round(height * max_side / width))
    return max(1, round(width * max_side / height)), max_side


def _replace(old: Image.Image, new: Image.Image) -> Image.Image:
    """Free ``old`` as soon as it has been superseded, to keep peak memory low."""
    if new is not old:
        old.close()
    return new


def _to_rgb(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """An RGB image of ``size``. Takes ownership of ``img``: it is closed once superseded."""
    img = _replace(img, _resizable(img))
    if img.size != size:
        img = _replace(img, img.resize(size, Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP))
    if img.mode == "RGBa":  # from _reduce: premultiplied, so it resized without a copy
        img = _replace(img, img.convert("RGBA"))
    if img.mode in ("RGBA", "LA"):
        if img.mode == "LA":
            img = _replace(img, img.convert("RGBA"))
        flat = Image.new("RGB", img.size, _WHITE)
        flat.paste(img, (0, 0), img)  # alpha over white
        return _replace(img, flat)
    # L, CMYK (Adobe inverted CMYK is already un-inverted by the JPEG decoder)
    return _replace(img, img.convert("RGB")) if img.mode != "RGB" else img


def _resizable(img: Image.Image) -> Image.Image:
    """Bring ``img`` into a mode LANCZOS can resize, keeping alpha as a real channel.

    Resizing before the conversion to RGB keeps L and CMYK images small in memory.
    """
    mode = img.mode
    if mode in ("RGBA", "LA", "RGBa"):
        return img
    if mode in ("RGB", "L", "CMYK") and not img.has_transparency_data:
        return img
    if mode.startswith("I") or mode == "F":
        return _deep_gray_to_l(img)
    if img.has_transparency_data:  # P/PA palettes, RGB/L with a tRNS colour key, RGBa, La
        return img.convert("RGBA")
    if mode == "1":
        return img.convert("L")
    return img.convert("RGB")  # P, YCbCr, HSV, ...; ValueError for e.g. LAB


def _deep_gray_scale(img: Image.Image) -> tuple[float, float]:
    """(scale, offset) that bring 16/32-bit integer or float gray samples to 0..255."""
    if img.mode.startswith("I;16"):
        return 1 / 257, 0.0
    low, high = cast("tuple[float, float]", img.getextrema())
    if img.mode == "F" and low >= 0 and high <= 1:
        return 255.0, 0.0
    if low >= 0 and high <= 255:
        return 1.0, 0.0
    if img.mode == "I" and low >= 0 and high <= 65535:
        return 1 / 257, 0.0  # 16-bit samples in a 32-bit mode
    scale = 255 / (high - low) if high > low else 1.0
    return scale, -low * scale


def _deep_gray_to_l(
    img: Image.Image, scale_offset: tuple[float, float] | None = None
) -> Image.Image:
    """16/32-bit integer or float grayscale to 8 bit; Pillow's convert("L") only clips.

    ``scale_offset`` defaults to what :func:`_deep_gray_scale` finds in ``img``.
    """
    scale, offset = scale_offset or _deep_gray_scale(img)
    src = img if img.mode in ("I", "F") else img.convert("I")  # from I;16, I;16B, I;16L
    try:
        with src.point(lambda v: v * scale + offset) as scaled:
            return scaled.convert("L")
    finally:
        if src is not img:
            src.close()


def _to_srgb(img: Image.Image, icc_profile: bytes) -> Image.Image:
    """Convert RGB pixels from the embedded profile (e.g. iPhone Display P3) to sRGB.

    The output carries no profile, so without this wide-gamut photos would look dull
    and the garment colour would be off. A broken or non-RGB profile (CMYK, gray: those
    pixels were converted naively) is ignored.
    """
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        if source.profile.xcolor_space != "RGB ":
            return img
        if "sRGB" in (source.profile.profile_description or ""):
            return img  # already sRGB: skip a ~0.1 s no-op transform
        converted = ImageCms.profileToProfile(img, source, _SRGB_PROFILE, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return img
    return converted if converted is not None else img


def _encode(
    img: Image.Image,
    quality: int,
    subsampling: str = "4:2:0",
    pad: int = 0,
    *,
    optimize: bool = True,
) -> bytes:
    buf = io.BytesIO()
    img.save(
        buf,
        format="JPEG",
        quality=quality,
        optimize=optimize,
        progressive=False,
        subsampling=subsampling,
        comment=b" " * pad,  # also keeps a source JPEG/GIF comment from being copied
    )
    return buf.getvalue()


def _encode_fitting(img: Image.Image, quality: int, max_bytes: int) -> bytes | None:
    """The optimised encoding at ``quality`` if it fits ``max_bytes``, else None.

    Huffman optimisation costs ~3x the encoding time but only saves 5-15%, so a cheap
    unoptimised probe rules out hopeless qualities first.
    """
    probe = _encode(img, quality, optimize=False)
    if len(probe) > max_bytes * _OPTIMIZE_MAX_GAIN:
        return None
    data = _encode(img, quality)
    return data if len(data) <= max_bytes else None


def _encode_within_limits(img: Image.Image, limits: ImageLimits) -> NormalizedImage:
    data = _encode_fitting(img, _JPEG_QUALITY, limits.max_bytes)

    if data is not None and len(data) < limits.min_bytes:
        # DashScope rejects files under 5 KB, and a flat or tiny image can encode to less.
        # First spend the bytes on quality; if that is not enough, pad with a JPEG COM
        # (comment) segment, which decoders skip, so the pixels are unchanged.
        quality, subsampling = 100, "4:4:4"
        data = _encode(img, quality, subsampling)
        if len(data) > limits.max_bytes:  # only with absurdly close limits
            quality, subsampling = _JPEG_QUALITY, "4:2:0"
            data = _encode(img, quality, subsampling)
        pad = 0
        while len(data) < limits.min_bytes:
            # The COM segment adds exactly 4 + pad bytes, so this runs once.
            pad = min(pad + limits.min_bytes - len(data), _MAX_COMMENT_BYTES)
            data = _encode(img, quality, subsampling, pad)
            if pad == _MAX_COMMENT_BYTES:
                break
        return NormalizedImage(data, *img.size)

    if data is not None:
        return NormalizedImage(data, *img.size)
    # Too big: lower the quality step by step.
    for quality in _FALLBACK_QUALITIES:
        if fitting := _encode_fitting(img, quality, limits.max_bytes):
            return NormalizedImage(fitting, *img.size)

    # Even the lowest quality is too big (noise-like content at a large max_side):
    # shrink in 0.8 steps, always resampling from the full-size image.
    width, height = img.size
    min_scale = limits.min_side / min(width, height)
    scale = 1.0
    while scale > min_scale:
        scale = max(scale * _DOWNSCALE_STEP, min_scale)
        size = (
            max(limits.min_side, round(width * scale)),
            max(limits.min_side, round(height * scale)),
        )
        with img.resize(size, Image.Resampling.LANCZOS) as smaller:
            for quality in (_DOWNSCALED_QUALITY, _FALLBACK_QUALITIES[-1]):
                if fitting := _encode_fitting(smaller, quality, limits.max_bytes):
                    return NormalizedImage(fitting, *size)
    raise ImageRejected(RejectReason.FILE_TOO_LARGE, width, height)
