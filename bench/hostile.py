#!/usr/bin/env python3
"""Memory benchmark: hostile images (small files, huge once decoded) through the bot's intake.

    .venv/bin/python bench/hostile.py [--dir DIR] [--only NAME ...] [--json]
    python3 dev.py bench --hostile [same options]

Makes the corpus of bench/hostile_images.py (cached in --dir), then for every file starts a
fresh Python process that imports the bot (bot.app, so the baseline is the bot's) and runs
the real intake, ImageIntake._check() (what accept() does before the upload): the download
(a stub returning the file's bytes), the decode gate and byte budget, the magic-byte sniff,
decode_cost() and normalize() in worker threads. Each file is measured alone and twice at
once (two users sending it at the same moment), and finally the whole corpus is sent at
once, every file twice. Peak RSS is VmHWM of that process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RSS_LIMIT_MB = 300.0


def vm_kb(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


# --------------------------------------------------------------------------- child


async def _intake(paths: list[str]) -> list[str]:
    from services.images.intake import ImageIntake
    from services.images.normalize import ImageLimits, ImageRejected
    from services.model import InputImage

    class Downloads:
        """FileSource: a fresh bytearray of the file, read only when downloaded."""

        async def download(self, file_id: str) -> bytearray:
            return bytearray(await asyncio.to_thread(Path(paths[int(file_id)]).read_bytes))

    intake = ImageIntake(
        cast(Any, Downloads()), cast(Any, None), cast(Any, None), model="m", limits=ImageLimits()
    )

    async def one(index: int, path: str) -> str:
        size = (await asyncio.to_thread(Path(path).stat)).st_size
        image = InputImage(file_id=str(index), unique_id=str(index), file_size=size)
        try:
            checked = await intake._check(image)  # download, gate, sniff, normalize
        except ImageRejected as error:
            return f"refused: {error.reason.value}"
        return f"ok {checked.width}x{checked.height} {len(checked.data) // 1024} KB"

    return list(await asyncio.gather(*(one(i, path) for i, path in enumerate(paths))))


def child(paths: list[str]) -> None:
    import bot.app  # noqa: F401  the bot's own imports make up its baseline RSS

    base = vm_kb("VmRSS")
    started = time.monotonic()
    outcomes = asyncio.run(_intake(paths))
    result = {
        "base_mb": base / 1024,
        "peak_mb": vm_kb("VmHWM") / 1024,
        "seconds": time.monotonic() - started,
        "outcomes": outcomes,
    }
    print(json.dumps(result))


# --------------------------------------------------------------------------- parent


def measure(paths: list[Path]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *map(str, paths)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1], "peak_mb": 0.0}
    return cast("dict[str, Any]", json.loads(proc.stdout.splitlines()[-1]))


def describe(path: Path) -> str:
    import pillow_heif
    from PIL import Image

    pillow_heif.register_heif_opener()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the decompression-bomb warning
            img = Image.open(path)
        with img:
            frames = getattr(img, "n_frames", 1)
            more = f" x{frames}" if frames > 1 else ""
            return f"{img.width}x{img.height} {img.mode}{more}"
    except Exception as error:  # a bomb or a broken file: say so
        return type(error).__name__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "tryon-hostile")
    parser.add_argument("--only", nargs="*", default=None, help="corpus file names")
    parser.add_argument("--json", action="store_true", help="JSON rows on stdout")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0

    from bench.hostile_images import build

    print(f"corpus in {args.dir} (made once)", file=sys.stderr)
    files = list(build(args.dir, args.only))
    header = (
        f"{'file':26} {'on disk':>9}  {'decoded as':24} {'outcome':34} "
        f"{'alone':>8} {'two at once':>12}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    worst = 0.0
    for path, _what in files:
        alone = measure([path])
        two = measure([path, path])
        outcome = alone.get("error") or alone["outcomes"][0]
        worst = max(worst, alone["peak_mb"], two["peak_mb"])
        rows.append({"file": path.name, "alone": alone, "two": two})
        print(
            f"{path.name:26} {path.stat().st_size / 1024:7.0f} KB  {describe(path):24} "
            f"{outcome:34} {alone['peak_mb']:5.0f} MB {two['peak_mb']:9.0f} MB",
            flush=True,
        )
    everything = measure([p for p, _ in files] * 2)
    worst = max(worst, everything["peak_mb"])
    refused = sum(o.startswith("refused") for o in everything.get("outcomes", []))
    print(
        f"\nall {len(files)} files twice, at once ({2 * len(files)} images, {refused} refused): "
        f"peak RSS {everything['peak_mb']:.0f} MB in {everything.get('seconds', 0):.1f} s"
        f" (baseline {everything.get('base_mb', 0):.0f} MB)"
    )
    verdict = "ok" if worst < RSS_LIMIT_MB else "MISSED"
    print(f"worst peak RSS {worst:.0f} MB; target < {RSS_LIMIT_MB:.0f} MB: {verdict}")
    if args.json:
        print(json.dumps({"rows": rows, "everything": everything}))
    return 0 if worst < RSS_LIMIT_MB else 1


if __name__ == "__main__":
    sys.exit(main())
