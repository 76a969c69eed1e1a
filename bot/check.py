"""`tryon-bot check`: the pre-flight. One line per check (✓ passed, ✗ failed with the fix,
! worth knowing); exit code 1 if anything failed. It spends nothing and changes nothing:
getMe, getWebhookInfo, a free DashScope getPolicy per model, read-only file checks."""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from bot.app import account_config
from bot.logs import RedactingFilter
from bot.settings import Settings, SettingsError, load_settings
from bot.startup import (
    TOKEN_REJECTED,
    StartupError,
    _writable,
    check_database,
    lock_state,
    process_user,
)
from services.dashscope.account import BEIJING, probe_all

MIN_FREE_BYTES = 200 * 1024 * 1024
LOW_FREE_BYTES = 1024 * 1024 * 1024


@dataclass
class Report:
    out: TextIO = sys.stdout
    secrets: list[str] = field(default_factory=list)
    failed: int = 0

    def _line(self, mark: str, text: str) -> None:
        print(f"{mark} {RedactingFilter(self.secrets).redact(text)}", file=self.out, flush=True)

    def ok(self, text: str) -> None:
        self._line("✓", text)

    def fail(self, text: str) -> None:
        self.failed += 1
        self._line("✗", text)

    def note(self, text: str) -> None:
        self._line("!", text)


async def run_check(argv: list[str], out: TextIO = sys.stdout) -> int:
    report = Report(out)
    try:
        settings = load_settings()
    except SettingsError as error:
        for problem in error.problems:
            report.fail(f"settings: {problem}")
        report.fail("the other checks need valid settings; fix the lines above first")
        return 1
    report.secrets = settings.secrets()
    report.ok("settings: all values parse")
    for note in settings.notes:
        report.note(f"settings: {note}")
    await check_telegram(settings, report)
    await check_dashscope(settings, report)
    check_files(settings, report)
    check_port(settings, report)
    print(
        f"{'all checks passed' if not report.failed else f'{report.failed} check(s) failed'}",
        file=out,
    )
    return 1 if report.failed else 0


async def _bot_api(
    session: aiohttp.ClientSession, settings: Settings, method: str
) -> tuple[int, dict[str, Any]]:
    url = f"{settings.telegram_api_base_url}/bot{settings.telegram_bot_token}/{method}"
    async with session.get(url) as response:
        try:
            body = json.loads(await response.read())
        except ValueError:
            body = {}
        return response.status, body if isinstance(body, dict) else {}


async def check_telegram(settings: Settings, report: Report) -> None:
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            status, body = await _bot_api(session, settings, "getMe")
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            report.fail(
                f"Telegram: unreachable at {settings.telegram_api_base_url} "
                f"({type(error).__name__}): check the network, DNS, a proxy or "
                f"TELEGRAM_API_BASE_URL"
            )
            return
        if status in (401, 404) or not body.get("ok"):
            report.fail(TOKEN_REJECTED)
            return
        me = body["result"]
        report.ok(f"Telegram: token accepted, the bot is @{me.get('username')}")
        if me.get("can_join_groups"):
            report.ok("Telegram: can be added to groups")
        else:
            report.note(
                "Telegram: cannot be added to groups (private chats only); to allow groups: "
                "@BotFather → /setjoingroups → Enable"
            )
        if me.get("can_read_all_group_messages"):
            report.note(
                "Telegram: privacy mode is off: in groups the bot receives every message (it "
                "still only takes photos that reply to its prompts); /setprivacy → Enable is "
                "the recommended setting"
            )
        else:
            report.ok(
                "Telegram: privacy mode on (recommended): in groups the bot gets commands and "
                "replies to its prompts, which is all it needs"
            )
        try:
            status, body = await _bot_api(session, settings, "getWebhookInfo")
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            report.fail(f"Telegram: getWebhookInfo failed ({type(error).__name__})")
            return
    info = body.get("result") or {}
    url = str(info.get("url") or "")
    pending = int(info.get("pending_update_count") or 0)
    wanted = settings.telegram_webhook_url
    if wanted and url != wanted:
        report.note(
            f"Telegram: webhook mode is configured but Telegram has "
            f"{'no webhook' if not url else 'the webhook ' + url}; the bot sets {wanted} at start"
        )
    elif not wanted and url:
        report.note(
            f"Telegram: a webhook is set ({url}) while long polling is configured; the bot "
            f"removes it at start (deleteWebhook, pending updates kept)"
        )
    else:
        report.ok(f"Telegram: mode {'webhook ' + wanted if wanted else 'long polling'}")
    report.ok(f"Telegram: {pending} update(s) waiting")
    if info.get("last_error_message"):
        report.note(f"Telegram: last webhook delivery error: {info['last_error_message']}")


async def check_dashscope(settings: Settings, report: Report) -> None:
    if settings.dashscope_http_base_url.rstrip("/") != BEIJING:
        report.note(
            f"DashScope: DASHSCOPE_HTTP_BASE_URL is {settings.dashscope_http_base_url}, not "
            f"Beijing's {BEIJING} (try-on exists only there)"
        )
    for probe in await probe_all(account_config(settings)):
        if probe.ok:
            report.ok(f"DashScope: {probe.line}")
        elif probe.optional and not probe.account_problem and probe.problem != "network":
            report.note(
                f"DashScope ({probe.model}, optional): {probe.line}; without it "
                + (
                    "the ✨ HD button is hidden (or set TRYON_HD=off)"
                    if "refiner" in probe.model
                    else "'keep my garment' does not work"
                )
            )
        else:
            report.fail(f"DashScope ({probe.model}): {probe.line}")


def check_files(settings: Settings, report: Report) -> None:
    data_dir = settings.data_dir.absolute()
    if data_dir.exists() and not data_dir.is_dir():
        report.fail(f"data dir: {data_dir} is not a directory: point TRYON_DATA_DIR at one")
        return
    if not data_dir.exists():
        parent = _existing_parent(data_dir)
        if _writable(parent):
            report.ok(f"data dir: {data_dir} does not exist yet; it is created at start")
        else:
            report.fail(
                f"data dir: {data_dir} does not exist and {parent} is not writable by "
                f"{process_user()}: create it and give that user write access"
            )
        _check_disk(parent, report)
        return
    if _writable(data_dir):
        report.ok(f"data dir: {data_dir} is writable by {process_user()}")
    else:
        report.fail(
            f"data dir: {data_dir} is not writable by {process_user()}: e.g. "
            f"`chown {process_user().split()[0]} {data_dir}`"
        )
    holder = lock_state(data_dir)
    if holder is None:
        report.ok("data dir: no other instance holds the lock")
    else:
        report.note(f"data dir: the lock is held by {holder}: a bot is running on it")
    try:
        state = check_database(settings.database_path)
    except StartupError as error:
        report.fail(f"database: {error}")
    else:
        if state.exists:
            report.ok(
                f"database: {settings.database_path.absolute()} passes quick_check, "
                f"schema version {state.schema_version}"
            )
        else:
            report.ok("database: none yet; it is created at start")
    _check_disk(data_dir, report)


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_disk(path: Path, report: Report) -> None:
    free = shutil.disk_usage(path).free
    text = f"disk: {free / 1024**3:.1f} GB free at {path}"
    if free < MIN_FREE_BYTES:
        report.fail(text + ": free some space (the database and logs need room)")
    elif free < LOW_FREE_BYTES:
        report.note(text + " (low)")
    else:
        report.ok(text)


def check_port(settings: Settings, report: Report) -> None:
    if settings.http_port is None:
        report.ok("HTTP: off (TRYON_HTTP_PORT empty): no /healthz, /metrics or webhook")
        return
    where = f"{settings.http_host}:{settings.http_port}"
    sock = socket.socket(socket.AF_INET6 if ":" in settings.http_host else socket.AF_INET)
    try:
        sock.bind((settings.http_host, settings.http_port))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            running = lock_state(settings.data_dir) is not None
            message = f"HTTP: {where} is in use" + (
                " (probably by the running bot)" if running else ""
            )
            (report.note if running else report.fail)(
                message + ("" if running else ": stop what uses it, or change TRYON_HTTP_PORT")
            )
        else:
            report.fail(f"HTTP: cannot listen on {where} ({error.strerror}): check TRYON_HTTP_HOST")
    else:
        report.ok(f"HTTP: {where} is free")
    finally:
        with contextlib.suppress(OSError):
            sock.close()
