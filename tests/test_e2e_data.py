"""The quota ledger and /forget, end to end: forgetting does not buy another paid try-on,
and a job forgotten while it runs is deleted when it ends."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from telegram.ext import Application

from handlers.texts import MESSAGES, Texts
from services.model import Job, JobState, utc_day
from services.storage.database import Database
from services.storage.jobs import FINAL_STATES
from tests.actors import Actor
from tests.doubles.dashscope import FakeDashScope
from tests.doubles.telegram import FakeTelegram, SentMessage
from tests.harness import jpeg, make_settings, running_bot, services_of

TEXTS = Texts.load()


def matches(key: str, message: SentMessage) -> bool:
    """Whether the message is the English text `key`, whatever its {placeholders} hold."""
    escaped = re.escape(MESSAGES[key].text)
    return re.fullmatch(re.sub(r"\\\{\w+\\\}", ".+?", escaped), message.body) is not None


async def test_forget_does_not_give_another_paid_try_on(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path
) -> None:
    ann = Actor(tg, 5101, name="Ann")
    settings = make_settings(tg.base_url, ds.base_url, tmp_path / "data", user_daily_limit=1)
    async with running_bot(settings) as app:
        since = await ann.try_on(top=jpeg(seed=1))
        await ann.result(since)
        done = await ann.command("forget")
        assert matches("forgotten", done)
        store = services_of(app).store
        assert await store.count_used(utc_day(time.time()), 5101) == 1
        for _ in range(2):  # again and again: still refused
            refusal = await ann.command("tryon")
            assert matches("refused_daily_limit", refusal), refusal.body
            await ann.command("forget")
    assert len(ds.submits) == 1


async def test_budget_counts_what_forgotten_users_used(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path
) -> None:
    ann, bob = Actor(tg, 5201, name="Ann"), Actor(tg, 5202, name="Bob")
    settings = make_settings(tg.base_url, ds.base_url, tmp_path / "data", daily_budget=1)
    async with running_bot(settings):
        since = await ann.try_on(top=jpeg(seed=1))
        await ann.result(since)
        await ann.command("forget")
        refusal = await bob.command("tryon")
        assert matches("refused_budget", refusal), refusal.body
    assert len(ds.submits) == 1


async def test_a_billed_result_that_could_not_be_delivered_still_counts(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path
) -> None:
    ann = Actor(tg, 5301, name="Ann")
    settings = make_settings(tg.base_url, ds.base_url, tmp_path / "data", user_daily_limit=1)
    async with running_bot(settings) as app:
        tg.fail_next("sendPhoto", status=400, description="Bad Request: PHOTO_INVALID_DIMENSIONS")
        tg.fail_next("sendDocument", status=400, description="Bad Request: file is invalid")
        since = await ann.try_on(top=jpeg(seed=1))
        await ann.next_from_bot(since, lambda m: m.body == TEXTS.get("en", "fail_undeliverable"))
        store = services_of(app).store
        (job,) = await settled_jobs(app, 5301)
        assert job.state is JobState.FAILED and job.error_kind == "undeliverable"
        counts = await store.ledger_counts(utc_day(job.created_at), 5301)
        assert (counts.accepted, counts.billed, counts.unbilled) == (1, 1, 0)
        refusal = await ann.command("tryon")
        assert matches("refused_daily_limit", refusal), refusal.body
    assert len(ds.submits) == 1


@pytest.fixture
async def slow_ds() -> AsyncIterator[FakeDashScope]:
    async with FakeDashScope(pending_seconds=0.02, running_seconds=1.5) as fake:
        yield fake


async def test_forget_during_a_running_try_on_deletes_the_job_when_it_ends(
    tg: FakeTelegram, slow_ds: FakeDashScope, tmp_path: Path
) -> None:
    ann = Actor(tg, 5401, name="Ann")
    settings = make_settings(tg.base_url, slow_ds.base_url, tmp_path / "data")
    async with running_bot(settings) as app:
        store = services_of(app).store
        since = await ann.try_on(top=jpeg(seed=1))
        await tg.wait_for(lambda: len(slow_ds.submits) == 1)
        (running,) = await store.active()
        await ann.command("forget")
        kept = await store.get(running.id)
        assert kept is not None  # still running: the pipeline needs its row
        await ann.result(since)  # the result is still delivered...
        for _ in range(500):  # ...and then the row is gone
            if await store.get(running.id) is None:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the forgotten job's row is still there")
        counts = await store.ledger_counts(utc_day(running.created_at), 5401)
        assert (counts.accepted, counts.billed) == (1, 1)


async def settled_jobs(app: Application, user_id: int) -> list[Job]:  # type: ignore[type-arg]
    """The user's jobs, once none of them is still running (waits up to 10 s)."""
    db: Database = app.bot_data["db"]
    store = services_of(app).store
    for _ in range(500):
        rows = await db.fetchall("SELECT id FROM jobs WHERE user_id = ?", (user_id,))
        jobs = [job for row in rows if (job := await store.get(row["id"])) is not None]
        if all(job.state in FINAL_STATES for job in jobs):
            return jobs
        await asyncio.sleep(0.02)
    raise AssertionError(f"jobs of {user_id} still running: {jobs}")
