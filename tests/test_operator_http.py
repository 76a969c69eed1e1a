"""The operator's HTTP server: /healthz, /metrics (parsed with prometheus_client's own
parser) and webhook mode, against the real bot and the doubles."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from telegram.ext import Application

from bot.app import HEALTH_KEY, WEB_KEY
from bot.settings import Settings
from bot.web import WebServer
from services.metrics import Health
from tests.actors import Actor
from tests.doubles.dashscope import FakeDashScope
from tests.doubles.telegram import FakeTelegram
from tests.harness import WEBHOOK_SECRET, jpeg, make_settings, running_bot, webhook_overrides


def base(app: Application) -> str:  # type: ignore[type-arg]
    web: WebServer = app.bot_data[WEB_KEY]
    return f"http://127.0.0.1:{web.port}"


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """Read-only even for root (the tests run as root, where chmod changes nothing)."""
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.fixture
async def http_bot(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path
) -> AsyncIterator[Application]:  # type: ignore[type-arg]
    settings = make_settings(tg.base_url, ds.base_url, tmp_path / "data", http_port=0)
    async with running_bot(settings) as app:
        yield app


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_healthz_is_ok_while_polling_and_503_when_polling_stops(
    http_bot: Application,  # type: ignore[type-arg]
    tg: FakeTelegram,
) -> None:
    health: Health = http_bot.bot_data[HEALTH_KEY]
    await tg.wait_for(lambda: health.last_loop is not None)
    status, body = await get(base(http_bot) + "/healthz")
    assert status == 200, body
    assert json.loads(body)["status"] == "ok"
    assert http_bot.updater is not None
    await http_bot.updater.stop()  # the update loop hangs: no poll completes any more
    now = health.clock()
    health.clock = lambda: now + 91
    status, body = await get(base(http_bot) + "/healthz")
    assert status == 503
    assert "no update or poll completed in the last 90 s" in json.loads(body)["reasons"][0]


async def test_healthz_is_503_when_the_database_becomes_read_only(
    http_bot: Application,  # type: ignore[type-arg]
    tg: FakeTelegram,
) -> None:
    health: Health = http_bot.bot_data[HEALTH_KEY]
    await tg.wait_for(lambda: health.last_loop is not None)
    settings: Settings = http_bot.bot_data["settings"]
    with immutable(settings.database_path):
        status, body = await get(base(http_bot) + "/healthz")
    assert status == 503
    assert any("not writable" in r for r in json.loads(body)["reasons"]), body
    status, _ = await get(base(http_bot) + "/healthz")
    assert status == 200


async def test_metrics_count_a_try_on_in_prometheus_format(
    http_bot: Application,  # type: ignore[type-arg]
    tg: FakeTelegram,
) -> None:
    ann = Actor(tg, 6001)
    since = await ann.try_on(top=jpeg(seed=3))
    await ann.result(since)
    status, text = await get(base(http_bot) + "/metrics")
    assert status == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("tryon_updates_total", (("type", "message"),))] >= 4
    assert (
        samples[("tryon_dashscope_requests_total", (("endpoint", "submit"), ("status", "200")))]
        == 1
    )
    assert samples[("tryon_queue_length", ())] == 0
    assert samples[("tryon_slots_in_use", ())] == 0
    names = {family.name for family in text_string_to_metric_families(text)}
    for expected in (
        "tryon_tryons",
        "tryon_task_duration_seconds",
        "tryon_detection_delay_seconds",
        "tryon_telegram_errors",
        "tryon_uploads",
        "tryon_spend_estimate_yuan",
    ):
        assert expected in names


# -- webhook mode ------------------------------------------------------------------------


@pytest.fixture
async def webhook_bot(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path
) -> AsyncIterator[Application]:  # type: ignore[type-arg]
    settings = make_settings(tg.base_url, ds.base_url, tmp_path / "data", **webhook_overrides())
    async with running_bot(settings) as app:
        yield app


async def test_webhook_mode_runs_a_whole_try_on(
    webhook_bot: Application,  # type: ignore[type-arg]
    tg: FakeTelegram,
) -> None:
    call = tg.calls_of("setWebhook")[-1]
    assert call.params["secret_token"] == WEBHOOK_SECRET
    assert call.params["allowed_updates"] == ["message", "callback_query"]
    assert tg.calls_of("getUpdates") == []
    ann = Actor(tg, 6002)
    since = await ann.try_on(top=jpeg(seed=5))
    await ann.result(since)


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({}, b'{"update_id": 1}', 401),
        ({"X-Telegram-Bot-Api-Secret-Token": "wrong"}, b'{"update_id": 1}', 401),
        ({"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}, b"not json", 400),
        ({"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}, b"[1, 2]", 400),
        ({"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}, b" " * (1024 * 1024 + 1), 400),
    ],
)
async def test_webhook_refuses_requests_without_the_secret_or_a_json_update(
    webhook_bot: Application,  # type: ignore[type-arg]
    tg: FakeTelegram,
    headers: dict[str, str],
    body: bytes,
    status: int,
) -> None:
    settings: Settings = webhook_bot.bot_data["settings"]
    user = tg.user(6003, "Eve")
    update = {
        "update_id": 999,
        "message": {
            "message_id": 1,
            "date": 0,
            "chat": tg.private_chat(user),
            "from": user,
            "text": "/help",
            "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
        },
    }
    if status == 401:
        body = json.dumps(update).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(settings.telegram_webhook_url, data=body, headers=headers) as response,
    ):
        assert response.status == status
    sent = len(tg.sent)
    # Nothing was processed: the bot answers nobody.
    with pytest.raises(AssertionError):
        await tg.wait_for(lambda: len(tg.sent) > sent or None, timeout=0.5)


async def test_switching_back_to_polling_deletes_the_webhook_and_keeps_updates(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    settings = make_settings(tg.base_url, ds.base_url, data, **webhook_overrides())
    async with running_bot(settings):
        pass
    ann = Actor(tg, 6004)
    tg.send_command(ann.chat, ann.user, "help")  # arrives while no bot runs
    async with running_bot(make_settings(tg.base_url, ds.base_url, data)):
        delete = tg.calls_of("deleteWebhook")[-1]
        assert delete.params.get("drop_pending_updates") in (None, False, "false")
        reply = await ann.next_from_bot(0)
        assert reply.kind == "text"
