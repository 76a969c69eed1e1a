"""Side-by-side collage of try-on results, labelled 1–4 (pure: bytes in, JPEG out).

Every picture is scaled to the same height and kept whole (no cropping, so the person
is never cut); the labels sit in the top-left corner of each panel.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont, ImageOps

MAX_PANELS = 4
MAX_HEIGHT = 1280
MAX_WIDTH = 4096  # keeps the collage within sendPhoto's width + height ≤ 10000
GAP = 12
BACKGROUND = (255, 255, 255)


def collage(images: Sequence[bytes], *, max_height: int = MAX_HEIGHT) -> bytes:
    """A JPEG with the images side by side, same height, each labelled with its number."""
    if not 2 <= len(images) <= MAX_PANELS:
        raise ValueError(f"a collage has 2 to {MAX_PANELS} pictures, not {len(images)}")
    panels = []
    for data in images:
        with Image.open(io.BytesIO(data)) as raw:
            panels.append(ImageOps.exif_transpose(raw).convert("RGB"))
    height = min(max_height, min(p.height for p in panels))
    widths = [round(p.width * height / p.height) for p in panels]
    total = sum(widths) + GAP * (len(panels) + 1)
    if total > MAX_WIDTH:  # many wide pictures: smaller, still whole
        scale = (MAX_WIDTH - GAP * (len(panels) + 1)) / sum(widths)
        height = max(1, int(height * scale))
        widths = [max(1, int(w * scale)) for w in widths]
        total = sum(widths) + GAP * (len(panels) + 1)
    canvas = Image.new("RGB", (total, height + 2 * GAP), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(14, height // 12))
    radius = max(12, height // 16)
    x = GAP
    for number, (panel, width) in enumerate(zip(panels, widths, strict=True), start=1):
        canvas.paste(panel.resize((width, height), Image.Resampling.LANCZOS), (x, GAP))
        cx, cy = x + radius + GAP // 2, GAP + radius + GAP // 2
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(20, 20, 20))
        draw.text((cx, cy), str(number), fill=(255, 255, 255), font=font, anchor="mm")
        x += width + GAP
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=88)
    return out.getvalue()
