"""Runs the real bot against the test doubles: in-process (the same lifecycle as
`run_polling`) or as a subprocess (`python -m bot`) that tests can kill."""

from __future__ import annotations

import asyncio
import io
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from telegram import Update
from telegram.ext import Application

from bot.app import build_application
from bot.settings import Settings
from handlers.context import SERVICES_KEY, BotServices
from handlers.ordering import PerUserOrderedProcessor
from tests.doubles.telegram import FakeTelegram

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "123456789:FAKE-test-token-for-the-double-00000000"
API_KEY = "sk-test-key"

# Timings that keep the suite fast; every one of them is a setting in production.
FAST: dict[str, Any] = {
    "poll_interval": 0.05,
    "retry_base_delay": 0.01,
    "request_timeout": 3.0,
    "status_interval": 0.2,
    "sweep_interval": 0.1,
}


def make_settings(
    telegram_root: str, dashscope_base: str, data_dir: Path, **overrides: Any
) -> Settings:
    settings = Settings(
        telegram_bot_token=TOKEN,
        dashscope_api_key=API_KEY,
        telegram_api_base_url=telegram_root,
        dashscope_http_base_url=dashscope_base,
        data_dir=data_dir,
    )
    return replace(settings, **{**FAST, **overrides})


def settings_env(settings: Settings) -> dict[str, str]:
    """The same settings as environment variables, for a bot subprocess."""
    env = {
        "TELEGRAM_BOT_TOKEN": settings.telegram_bot_token,
        "DASHSCOPE_API_KEY": settings.dashscope_api_key,
        "TELEGRAM_API_BASE_URL": settings.telegram_api_base_url,
        "DASHSCOPE_HTTP_BASE_URL": settings.dashscope_http_base_url,
        "TRYON_DATA_DIR": str(settings.data_dir),
        "TRYON_MODEL": settings.tryon_model,
        "TRYON_CONVERSATION_TIMEOUT": str(settings.conversation_timeout),
        "TRYON_MAX_CONCURRENT": str(settings.max_concurrent),
        "TRYON_QUERY_QPS": str(settings.query_qps),
        "TRYON_POLL_INTERVAL": str(settings.poll_interval),
        "TRYON_RETRY_BASE_DELAY": str(settings.retry_base_delay),
        "TRYON_REQUEST_TIMEOUT": str(settings.request_timeout),
        "TRYON_STATUS_INTERVAL": str(settings.status_interval),
        "TRYON_SWEEP_INTERVAL": str(settings.sweep_interval),
        "TRYON_USER_DAILY_LIMIT": str(settings.user_daily_limit),
        "TRYON_DAILY_BUDGET": str(settings.daily_budget),
        "TRYON_LOG_LEVEL": "INFO",
        "TRYON_HD": "on" if settings.hd else "off",
    }
    if settings.allowed_chats:
        env["TRYON_ALLOWED_CHATS"] = ",".join(map(str, settings.allowed_chats))
    return env


@asynccontextmanager
async def running_bot(settings: Settings) -> AsyncIterator[Application]:  # type: ignore[type-arg]
    """Starts the real Application with long polling, like run_polling, and stops it the
    same way (updater, application, post_stop, shutdown, post_shutdown)."""
    app = build_application(settings)
    await app.initialize()
    assert app.post_init is not None
    await app.post_init(app)
    assert app.updater is not None
    await app.updater.start_polling(
        poll_interval=0, timeout=1, allowed_updates=[Update.MESSAGE, Update.CALLBACK_QUERY]
    )
    await app.start()
    try:
        yield app
    finally:
        if app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        if app.post_stop is not None:
            await app.post_stop(app)
        await app.shutdown()
        if app.post_shutdown is not None:
            await app.post_shutdown(app)


async def handled(tg: FakeTelegram, app: Application, timeout: float = 10.0) -> None:  # type: ignore[type-arg]
    """Waits until the bot has fetched and finished every update sent so far (updates of
    different users run concurrently, so another user's answer proves nothing)."""
    await tg.wait_consumed(timeout)
    processor = app.update_processor
    assert isinstance(processor, PerUserOrderedProcessor)
    loop = asyncio.get_running_loop()
    deadline, quiet = loop.time() + timeout, 0
    while quiet < 3:
        idle = app.update_queue.empty() and processor.busy() == 0
        quiet = quiet + 1 if idle else 0
        if loop.time() > deadline:
            raise AssertionError("the bot is still handling updates")
        await asyncio.sleep(0.02)


def services_of(app: Application) -> BotServices:  # type: ignore[type-arg]
    services: BotServices = app.bot_data[SERVICES_KEY]
    return services


class BotProcess:
    """`python -m bot` as a child process, with its output collected for assertions."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.output = b""

    def start(self) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TRYON_", "TELEGRAM_", "DASHSCOPE_"))
        }
        env.update(self.env)
        env["PYTHONPATH"] = str(ROOT)
        self.log_path = self.cwd / f"bot-{random.randrange(1 << 30)}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot"],
            cwd=self.cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log_text(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    async def wait_for_log(self, needle: str, timeout: float = 20.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while needle not in self.log_text():
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"bot exited ({self.proc.returncode}):\n{self.log_text()}")
            if loop.time() > deadline:
                raise AssertionError(
                    f"{needle!r} not logged within {timeout} s:\n{self.log_text()}"
                )
            await asyncio.sleep(0.02)

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (code := self.proc.poll()) is None:
            if loop.time() > deadline:
                self.proc.kill()
                raise AssertionError(f"bot did not exit within {timeout} s:\n{self.log_text()}")
            await asyncio.sleep(0.02)
        self._log.close()
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def jpeg(width: int = 600, height: int = 900, seed: int = 1, quality: int = 90) -> bytes:
    """A photo-like JPEG: noisy shapes, so it encodes well above DashScope's 5 KB floor."""
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(60):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = x0 + rng.randrange(10, width // 2 + 11), y0 + rng.randrange(10, height // 2 + 11)
        draw.rectangle((x0, y0, x1, y1), fill=tuple(rng.randrange(256) for _ in range(3)))
    noise = Image.effect_noise((width, height), 40).convert("RGB")
    image = Image.blend(image, noise, 0.25)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def image_bytes(fmt: str, width: int = 500, height: int = 700, seed: int = 2) -> bytes:
    src = Image.open(io.BytesIO(jpeg(width, height, seed)))
    out = io.BytesIO()
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    src.save(out, fmt)
    return out.getvalue()
