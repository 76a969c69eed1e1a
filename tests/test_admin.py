"""Admins: /stats against a known history, refused (as an unknown command) for others, the
admin menu, and reports to admins (account problems, exceptions, budget), rate-limited."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from telegram.ext import Application

from bot.app import METRICS_KEY
from bot.logs import RedactingFilter
from handlers.admin_reports import EXCEPTION, AdminReporter
from handlers.texts import Texts
from services.model import utc_day
from services.storage.database import Database
from services.storage.profiles import ProfileStore
from tests.actors import Actor
from tests.doubles.dashscope import FakeDashScope
from tests.doubles.telegram import FakeTelegram
from tests.harness import jpeg, make_settings, running_bot

ADMIN = 7001
USER = 7002


@pytest.fixture
async def admin_bot(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path
) -> AsyncIterator[Application]:  # type: ignore[type-arg]
    tg.private_chat(tg.user(ADMIN, "Olga"))  # the admin has opened the bot once
    settings = make_settings(
        tg.base_url, ds.base_url, tmp_path / "data", admin_ids=frozenset({ADMIN}), daily_budget=5
    )
    async with running_bot(settings) as app:
        yield app


async def add_job(
    db: Database, n: int, day_offset: int, user: int, state: str, **cols: Any
) -> None:
    now = time.time() - day_offset * 86400
    row: dict[str, Any] = {
        "id": f"hist{n:04d}",
        "chat_id": user,
        "user_id": user,
        "lang": "en",
        "model": "aitryon-plus",
        "person_file_id": "f",
        "person_unique_id": "u",
        "state": state,
        "day": utc_day(now),
        "created_at": now,
        "updated_at": now,
        **cols,
    }
    if "delivered_after" in row:
        row["delivered_at"] = now + row.pop("delivered_after")
        row["result_url"] = "https://example.invalid/r.png"
    names = ", ".join(row)
    await db.execute(
        f"INSERT INTO jobs ({names}) VALUES ({', '.join('?' for _ in row)})", tuple(row.values())
    )


async def test_stats_match_a_known_history(
    admin_bot: Application,  # type: ignore[type-arg]
    tg: FakeTelegram,
) -> None:
    now = datetime.now(UTC)
    if now.hour == 23 and now.minute >= 58:  # keep "today" stable during the test
        pytest.skip("too close to midnight UTC")
    db: Database = admin_bot.bot_data["db"]
    await add_job(db, 1, 0, 1, "delivered", delivered_after=20.0)
    await add_job(db, 2, 0, 2, "delivered", delivered_after=30.0)
    await add_job(db, 3, 0, 1, "failed", error_kind="invalid_person")
    await add_job(db, 4, 0, 3, "canceled", error_kind="canceled")
    await add_job(db, 5, 5, 4, "delivered", delivered_after=10.0, model="aitryon")
    await add_job(db, 6, 5, 4, "failed", error_kind="timeout")
    await add_job(db, 7, 5, 5, "interrupted", error_kind="interrupted")
    await add_job(db, 8, 40, 6, "delivered", delivered_after=5.0)  # outside the 30 days
    olga = Actor(tg, ADMIN, name="Olga")
    text = await olga.command("stats")
    body = text.body
    today, month = body.split("Last 30 days")
    assert "users 3, try-ons started 4, delivered 2, failed 1, canceled 1" in today
    assert "success rate 66.7 %" in today
    assert "p50 20.0 s, p95 30.0 s" in today
    assert "failed by kind: invalid_person 1" in today
    assert "spend estimate ¥1.00 (aitryon-plus 2 × ¥0.50 = ¥1.00)" in today
    assert "users 5, try-ons started 7, delivered 3, failed 3, canceled 1" in month
    assert "success rate 50.0 %" in month
    assert "failed by kind: interrupted 1, invalid_person 1, timeout 1" in month
    assert "spend estimate ¥1.20" in month
    assert "aitryon 1 × ¥0.20 = ¥0.20" in month
    assert "0 waiting, 0 of 5 slots in use" in month
    # The budget counts from the quota ledger (the inserted history bypasses it).
    assert re.search(r"daily budget: \d+ of 5 used \(\d+ %\)", month)
    chart = await olga.next_from_bot(len(tg.sent) - 1, lambda m: m.kind == "photo")
    assert chart.kind == "photo"


async def test_stats_is_an_unknown_command_for_others(
    admin_bot: Application,  # type: ignore[type-arg]
    tg: FakeTelegram,
) -> None:
    bob = Actor(tg, USER, name="Bob")
    unknown = await bob.command("whatever")
    stats = await bob.command("stats")
    assert stats.body == unknown.body
    assert "users" not in stats.body


async def test_admins_get_the_admin_menu_in_their_chat_only(
    admin_bot: Application,  # type: ignore[type-arg]
    tg: FakeTelegram,
) -> None:
    calls = [c for c in tg.calls_of("setMyCommands") if "stats" in str(c.params["commands"])]
    assert calls and all(str(ADMIN) in str(c.params["scope"]) for c in calls)
    assert {c.params["scope"]["type"] for c in calls} == {"chat"}


async def test_a_wrong_key_is_reported_and_users_hear_the_owner_was_notified(
    tg: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tg.private_chat(tg.user(ADMIN, "Olga"))
    async with FakeDashScope(api_key="sk-another-key") as ds:
        settings = make_settings(
            tg.base_url, ds.base_url, tmp_path / "data", admin_ids=frozenset({ADMIN})
        )
        with caplog.at_level(logging.ERROR):
            async with running_bot(settings):
                report = tg.last_to(ADMIN)
                assert "DashScope account problem" in report.body
                assert "InvalidApiKey" in report.body
                assert "sk-" not in report.body
                ann = Actor(tg, USER)
                answer = await ann.command("tryon")
                assert "owner has been notified" in answer.body
                assert ds.submits == [] and ds.upload_count == 0
                again = await ann.command("tryon")  # re-checked, still refused, one report
                assert "unavailable" in again.body
                reports = [m for m in tg.messages_to(ADMIN) if "account problem" in m.body]
                assert len(reports) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("rejects DASHSCOPE_API_KEY" in e for e in errors)


async def test_without_admins_users_are_not_told_anyone_was_notified(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    async with FakeDashScope(api_key="sk-another-key") as ds:
        settings = make_settings(tg.base_url, ds.base_url, tmp_path / "data")
        async with running_bot(settings):
            ann = Actor(tg, USER)
            answer = await ann.command("tryon")
    assert "unavailable right now" in answer.body
    assert "notified" not in answer.body


async def test_an_unexpected_error_is_reported_with_the_id_of_its_log_line(
    admin_bot: Application,  # type: ignore[type-arg]
    tg: FakeTelegram,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(self: ProfileStore, user_id: int) -> object:
        raise RuntimeError("database on fire, token 123456789:FAKE-test-token")

    monkeypatch.setattr(ProfileStore, "get", broken)
    ann = Actor(tg, USER)
    with caplog.at_level(logging.ERROR):
        await ann.command("tryon")
        report = await tg.wait_for_message(ADMIN, lambda m: "Unexpected error" in m.body)
    ref = re.search(r"error ([0-9a-f]{8})", report.body)
    assert ref is not None
    assert any(f"Unhandled error {ref[1]}" in r.getMessage() for r in caplog.records)
    assert "FAKE-test-token" not in report.body and "fire" not in report.body


async def test_budget_at_80_and_100_percent_is_reported_once(
    admin_bot: Application,  # type: ignore[type-arg]
    tg: FakeTelegram,
) -> None:
    ann = Actor(tg, USER)
    for seed in range(4):
        since = await ann.try_on(top=jpeg(seed=20 + seed))
        await ann.result(since)
    report = await tg.wait_for_message(ADMIN, lambda m: "80 %" in m.body)
    assert "of today's 5 try-ons used" in report.body
    since = await ann.try_on(top=jpeg(seed=30))
    await ann.result(since)
    spent = await tg.wait_for_message(ADMIN, lambda m: "budget spent" in m.body)
    assert "5 of today's 5" in spent.body
    assert len([m for m in tg.messages_to(ADMIN) if "80 %" in m.body]) == 1
    metrics = admin_bot.bot_data[METRICS_KEY]
    await tg.wait_for(
        lambda: metrics.tryons.labels("delivered", "")._value.get() == 5 or None, timeout=5
    )


class FakeBot:
    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []

    async def send_message(self, chat_id: int, text: str) -> None:
        self.sent.append((chat_id, text))


async def test_reports_are_rate_limited_per_kind_with_a_count() -> None:
    now = [1000.0]
    bot = FakeBot()
    reporter = AdminReporter(
        bot,  # type: ignore[arg-type]
        [1, 2],
        redact=RedactingFilter(["sk-secret-key"]).redact,
        clock=lambda: now[0],
    )
    assert await reporter.report(EXCEPTION, "error aaaa1111: ValueError, key sk-secret-key")
    assert len(bot.sent) == 2  # both admins
    assert "sk-secret-key" not in bot.sent[0][1]
    for _ in range(3):
        now[0] += 60
        assert await reporter.report(EXCEPTION, "error bbbb2222: ValueError")
    assert len(bot.sent) == 2  # held back within 10 minutes
    assert await reporter.report("budget_80", "4 of 5")  # another kind is not held back
    assert len(bot.sent) == 4
    now[0] += 600
    assert await reporter.report(EXCEPTION, "error cccc3333: KeyError")
    assert "(+3 more of this kind in the last 10 min)" in bot.sent[-1][1]


def test_chart_renders_30_days() -> None:
    from handlers.admin import render_chart
    from services.storage.stats import DayCounts

    start = datetime(2026, 1, 1)
    days = [
        DayCounts((start + timedelta(days=i)).strftime("%Y-%m-%d"), delivered=i, failed=i % 3)
        for i in range(30)
    ]
    png = render_chart(days)
    assert png.startswith(b"\x89PNG")


async def test_an_allowlisted_group_keeps_access_after_becoming_a_supergroup(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path
) -> None:
    not_allowed = Texts.load().get("en", "not_allowed")
    group = tg.group(-3900, "Shop", supergroup=False)
    member = Actor(tg, 3901, chat=group, name="Member")
    settings = make_settings(
        tg.base_url, ds.base_url, tmp_path / "data", allowed_chats=frozenset({-3900})
    )
    async with running_bot(settings) as app:
        assert (await member.command("help")).body != not_allowed
        supergroup = tg.migrate_group_to_supergroup(group)
        await tg.wait_consumed()
        member.chat = supergroup
        assert (await member.command("help")).body != not_allowed
        db: Database = app.bot_data["db"]
        rows = await db.fetchall("SELECT old_chat_id, new_chat_id FROM chat_migrations")
        assert [(r[0], r[1]) for r in rows] == [(-3900, supergroup["id"])]
    async with running_bot(settings):  # after a restart too
        other = Actor(tg, 3902, chat=supergroup, name="Other")
        assert (await other.command("help")).body != not_allowed
    stranger_group = tg.group(-3999, "Elsewhere")
    async with running_bot(settings):
        stranger = Actor(tg, 3903, chat=stranger_group, name="Stranger")
        assert (await stranger.command("help")).body == not_allowed


async def test_a_try_on_given_up_is_reported(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path
) -> None:
    tg.private_chat(tg.user(ADMIN, "Olga"))
    settings = make_settings(
        tg.base_url, ds.base_url, tmp_path / "data", admin_ids=frozenset({ADMIN}), task_deadline=1.0
    )
    ds.hold_tasks()  # the task never finishes
    async with running_bot(settings):
        ann = Actor(tg, USER)
        await ann.try_on(top=jpeg(seed=40))
        report = await tg.wait_for_message(ADMIN, lambda m: "given up" in m.body, timeout=15)
    assert "TRYON_TASK_DEADLINE (1 s)" in report.body
