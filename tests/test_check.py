"""`python -m bot check` against the doubles: all green, and each failure class with its
fix. It never spends money (no upload, no task) and changes nothing."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import Settings
from bot.startup import TOKEN_REJECTED
from tests.doubles.dashscope import FakeDashScope
from tests.doubles.telegram import FakeTelegram
from tests.harness import API_KEY, ROOT, TOKEN, BotProcess, free_port, make_settings, settings_env


def run_check(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRYON_", "TELEGRAM_", "DASHSCOPE_"))
    }
    clean.update(env)
    clean["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "bot", "check"],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def check(settings: Settings, cwd: Path, **env: str) -> tuple[int, list[str]]:
    result = await asyncio.to_thread(run_check, {**settings_env(settings), **env}, cwd)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert TOKEN not in output and API_KEY not in output
    return result.returncode, result.stdout.splitlines()


def failures(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("✗")]


@pytest.fixture
def settings(tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path) -> Settings:
    return make_settings(tg.base_url, ds.base_url, tmp_path / "data", http_port=free_port())


async def test_all_green(
    settings: Settings, tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path
) -> None:
    code, lines = await check(settings, tmp_path)
    assert code == 0, lines
    assert failures(lines) == []
    text = "\n".join(lines)
    assert "✓ Telegram: token accepted, the bot is @TryOnTestBot" in text
    assert "✓ Telegram: can be added to groups" in text
    assert "privacy mode on" in text
    assert "✓ Telegram: mode long polling" in text
    assert "✓ DashScope: DashScope key accepted, model aitryon-plus available" in text
    assert "data dir" in text and "disk:" in text and "is free" in text
    assert lines[-1] == "all checks passed"
    assert ds.submits == [] and ds.upload_count == 0  # nothing spent
    assert not settings.data_dir.exists()  # nothing created


async def test_every_settings_problem_is_listed(settings: Settings, tmp_path: Path) -> None:
    code, lines = await check(
        settings, tmp_path, TRYON_MODEL="wanx", TRYON_MAX_CONCURRENT="many", TRYON_HTTP_PORT="x"
    )
    assert code == 1
    text = "\n".join(failures(lines))
    for name in ("TRYON_MODEL", "TRYON_MAX_CONCURRENT", "TRYON_HTTP_PORT"):
        assert name in text


async def test_rejected_token(ds: FakeDashScope, tmp_path: Path) -> None:
    async with FakeTelegram(token="999999999:another-token-the-bot-does-not-have") as tg:
        settings = make_settings(tg.base_url, ds.base_url, tmp_path / "data")
        code, lines = await check(settings, tmp_path)
    assert code == 1
    assert f"✗ {TOKEN_REJECTED}" in failures(lines)  # the same line as at start-up


async def test_telegram_unreachable(ds: FakeDashScope, tmp_path: Path) -> None:
    settings = make_settings(f"http://127.0.0.1:{free_port()}", ds.base_url, tmp_path / "data")
    code, lines = await check(settings, tmp_path)
    assert code == 1
    assert any("unreachable" in line for line in failures(lines))


async def test_privacy_mode_off_groups_off_and_a_webhook_left_over(
    settings: Settings, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.privacy_mode = False
    tg.can_join_groups = False
    await tg._api_setWebhook({"url": "https://old.example/hook"})
    tg.send_text(tg.private_chat(tg.user(5, "A")), tg.user(5, "A"), "hi")
    code, lines = await check(settings, tmp_path)
    assert code == 0, lines  # worth knowing, not failures
    text = "\n".join(lines)
    assert "! Telegram: cannot be added to groups" in text and "/setjoingroups" in text
    assert "! Telegram: privacy mode is off" in text
    assert "a webhook is set (https://old.example/hook) while long polling is configured" in text
    assert "✓ Telegram: 1 update(s) waiting" in text
    await tg._api_deleteWebhook({})


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("wrong_key", "rejects DASHSCOPE_API_KEY (InvalidApiKey)"),
        ("wrong_path", "answers 404 (wrong region or path)"),
        ("arrears", "in arrears (Arrearage)"),
        ("model", "model aitryon-plus is not activated"),
        ("denied", "is not activated for this key (AccessDenied.Unpurchased)"),
    ],
)
async def test_dashscope_problems_are_told_apart(
    tg: FakeTelegram, tmp_path: Path, fault: str, expected: str
) -> None:
    models = ("aitryon",) if fault == "model" else ("aitryon-plus", "aitryon")
    key = "sk-another-key" if fault == "wrong_key" else API_KEY
    async with FakeDashScope(api_key=key, models=models) as ds:
        base = ds.origin + "/api/v2" if fault == "wrong_path" else ds.base_url
        settings = make_settings(tg.base_url, base, tmp_path / "data")
        if fault == "arrears":
            ds.fail_next("policy", 400, "Arrearage")
        if fault == "denied":
            ds.fail_next("policy", 403, "AccessDenied.Unpurchased")
        code, lines = await check(settings, tmp_path)
        assert ds.submits == [] and ds.upload_count == 0
    assert code == 1
    assert any(expected in line for line in failures(lines)), lines


async def test_data_dir_problems(settings: Settings, tmp_path: Path) -> None:
    settings.data_dir.mkdir()
    garbage = b"not a database at all" * 100
    settings.database_path.write_bytes(garbage)
    code, lines = await check(settings, tmp_path)
    assert code == 1
    assert any("database" in line and "damaged" in line for line in failures(lines))
    assert settings.database_path.read_bytes() == garbage
    settings.database_path.unlink()
    settings.data_dir.rmdir()
    settings.data_dir.write_text("a file")
    code, lines = await check(settings, tmp_path)
    assert any("is not a directory" in line for line in failures(lines))


async def test_lock_held_and_port_in_use(settings: Settings, tmp_path: Path) -> None:
    bot = BotProcess(settings_env(settings), tmp_path)
    bot.start()
    try:
        await bot.wait_for_log("Bot @TryOnTestBot ready")
        code, lines = await check(settings, tmp_path)
    finally:
        bot.kill()
    text = "\n".join(lines)
    assert f"the lock is held by pid {bot.proc.pid if bot.proc else 0}" in text
    assert "is in use (probably by the running bot)" in text
    with socket.socket() as other:
        other.bind(("127.0.0.1", settings.http_port or 0))
        other.listen()
        code, lines = await check(settings, tmp_path)
    assert code == 1
    assert any("is in use" in line and "TRYON_HTTP_PORT" in line for line in failures(lines))
