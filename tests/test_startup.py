"""Start-up as an operator meets it: `python -m bot` as a subprocess. Every failure is one
line and a non-zero exit, nothing is destroyed, and no secret is ever printed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from telegram import Bot
from telegram.error import InvalidToken, NetworkError

from bot.logs import RedactingFilter
from bot.serve import describe
from bot.settings import Settings
from tests.doubles.dashscope import FakeDashScope
from tests.doubles.telegram import FakeTelegram
from tests.harness import API_KEY, ROOT, TOKEN, BotProcess, free_port, make_settings, settings_env


def run_bot(
    env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRYON_", "TELEGRAM_", "DASHSCOPE_"))
    }
    clean.update(env)
    clean["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def env_for(settings: Settings) -> dict[str, str]:
    return settings_env(settings)


def failure_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert TOKEN not in output and API_KEY not in output
    return [line for line in result.stderr.splitlines() if line.startswith("tryon-bot:")]


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.fixture
def settings(tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path) -> Settings:
    return make_settings(tg.base_url, ds.base_url, tmp_path / "data")


async def run_async(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # The doubles run on this test's event loop: the subprocess must not block it.
    return await asyncio.to_thread(run_bot, env, cwd)


async def test_data_dir_that_is_a_file(settings: Settings, tmp_path: Path) -> None:
    settings.data_dir.write_text("oops")
    result = await run_async(env_for(settings), tmp_path)
    assert result.returncode != 0
    lines = failure_lines(result)
    assert (
        len(lines) == 1 and "is not a directory" in lines[0] and str(settings.data_dir) in lines[0]
    )


async def test_data_dir_not_writable_names_the_path_and_the_user(
    settings: Settings, tmp_path: Path
) -> None:
    settings.data_dir.mkdir()
    with immutable(settings.data_dir):
        result = await run_async(env_for(settings), tmp_path)
    assert result.returncode != 0
    lines = failure_lines(result)
    assert len(lines) == 1
    assert str(settings.data_dir) in lines[0] and "not writable by user" in lines[0]


async def test_corrupt_database_is_reported_and_left_byte_for_byte(
    settings: Settings, tg: FakeTelegram, tmp_path: Path
) -> None:
    settings.data_dir.mkdir()
    garbage = b"SQLite format 3\x00" + os.urandom(8000)
    settings.database_path.write_bytes(garbage)
    result = await run_async(env_for(settings), tmp_path)
    assert result.returncode != 0
    lines = failure_lines(result)
    assert len(lines) == 1 and "damaged" in lines[0] and str(settings.database_path) in lines[0]
    assert settings.database_path.read_bytes() == garbage
    assert tg.calls_of("getUpdates") == [] and tg.calls_of("getMe") == []


async def test_database_from_a_newer_version(settings: Settings, tmp_path: Path) -> None:
    settings.data_dir.mkdir()
    with sqlite3.connect(settings.database_path) as conn:
        conn.execute("PRAGMA user_version = 99")
    result = await run_async(env_for(settings), tmp_path)
    lines = failure_lines(result)
    assert result.returncode != 0 and len(lines) == 1 and "newer" in lines[0]


async def test_read_only_database(settings: Settings, tmp_path: Path) -> None:
    settings.data_dir.mkdir()
    with sqlite3.connect(settings.database_path) as conn:
        conn.execute("CREATE TABLE t (x)")
    with immutable(settings.database_path):
        result = await run_async(env_for(settings), tmp_path)
    lines = failure_lines(result)
    assert result.returncode != 0 and len(lines) == 1 and "read-only" in lines[0]


async def test_rejected_token_is_one_line_without_the_token(
    ds: FakeDashScope, tmp_path: Path
) -> None:
    async with FakeTelegram(token="999999999:another-token-the-bot-does-not-have") as tg:
        settings = make_settings(tg.base_url, ds.base_url, tmp_path / "data")
        result = await run_async(env_for(settings), tmp_path)
    lines = failure_lines(result)
    assert result.returncode != 0
    assert lines == [
        "tryon-bot: Telegram rejected TELEGRAM_BOT_TOKEN (Unauthorized): copy the token again "
        "from @BotFather (/mybots → API Token)"
    ]


async def test_unreachable_telegram_is_retried_one_line_per_attempt(
    ds: FakeDashScope, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there
    settings = make_settings(f"http://127.0.0.1:{port}", ds.base_url, tmp_path / "data")
    result = await run_async(env_for(settings), tmp_path)
    assert result.returncode != 0
    lines = failure_lines(result)
    assert len(lines) == 1 and "Telegram is unreachable" in lines[0]
    attempts = [line for line in result.stderr.splitlines() if "Telegram unreachable" in line]
    assert len(attempts) == 5


async def test_quoted_values_are_unquoted_with_a_hint(settings: Settings, tmp_path: Path) -> None:
    env = env_for(settings)
    env["TELEGRAM_BOT_TOKEN"] = f'"{TOKEN}"'
    env["DASHSCOPE_API_KEY"] = f"'{API_KEY}'"
    process = BotProcess(env, tmp_path)
    process.start()
    try:
        await process.wait_for_log("Bot @TryOnTestBot ready")
        log = process.log_text()
        assert "TELEGRAM_BOT_TOKEN was given with quotes around it; they were removed" in log
        assert "DASHSCOPE_API_KEY was given with quotes" in log
        assert "DashScope account problem" not in log  # the unquoted key works
    finally:
        process.kill()


async def test_a_second_instance_on_the_same_data_dir_exits_at_once(
    settings: Settings, tg: FakeTelegram, tmp_path: Path
) -> None:
    first = BotProcess(env_for(settings), tmp_path)
    first.start()
    try:
        await first.wait_for_log("Bot @TryOnTestBot ready")
        get_me = len(tg.calls_of("getMe"))
        result = await run_async(env_for(settings), tmp_path)
        lines = failure_lines(result)
        assert result.returncode != 0
        assert len(lines) == 1 and "another instance is using" in lines[0]
        assert f"pid {first.proc.pid if first.proc else '?'}" in lines[0]
        assert len(tg.calls_of("getMe")) == get_me  # it polled nothing, asked nothing
    finally:
        first.kill()


async def test_a_conflict_at_run_time_is_one_error_line(
    settings: Settings, tg: FakeTelegram, tmp_path: Path
) -> None:
    first = BotProcess(env_for(settings), tmp_path)
    first.start()
    try:
        await first.wait_for_log("Bot @TryOnTestBot ready")
        # Someone else polls with the same token from elsewhere (another data dir).
        other = make_settings(tg.base_url, settings.dashscope_http_base_url, tmp_path / "other")
        second = BotProcess(env_for(other), tmp_path)
        second.start()
        try:
            await first.wait_for_log("409 Conflict", timeout=20)
            await asyncio.sleep(2)
        finally:
            second.kill()
        log = first.log_text() + second.log_text()
        assert "Traceback" not in log
        assert first.log_text().count("409 Conflict") <= 1
    finally:
        first.kill()


async def test_exceptions_of_a_rejected_token_and_an_unreachable_host_never_show_secrets(
    ds: FakeDashScope,
) -> None:
    """PTB's own InvalidToken message contains the token: every path that prints goes
    through the redaction (log filter, describe())."""
    settings_secrets = [TOKEN, API_KEY]
    async with FakeTelegram(token="999999999:another-token-the-bot-does-not-have") as tg:
        bot = Bot(TOKEN, base_url=f"{tg.base_url}/bot")
        with pytest.raises(InvalidToken) as rejected:
            await bot.initialize()
    bot = Bot(TOKEN, base_url=f"http://127.0.0.1:{free_port()}/bot")
    with pytest.raises(NetworkError) as unreachable:
        await bot.initialize()
    redact = RedactingFilter(settings_secrets).redact
    settings = make_settings("http://127.0.0.1:1", ds.base_url, Path("/nonexistent"))
    for info in (rejected, unreachable):
        text = "".join(traceback.format_exception(info.value))
        assert TOKEN not in redact(text)
        assert TOKEN not in describe(info.value, settings)
        record = logging.LogRecord("x", logging.ERROR, "f", 1, "failed: %r", (info.value,), None)
        record.exc_info = (type(info.value), info.value, info.value.__traceback__)
        RedactingFilter(settings_secrets).filter(record)
        assert TOKEN not in record.getMessage() + (record.exc_text or "")
    assert TOKEN in str(rejected.value)  # what the redaction protects against
