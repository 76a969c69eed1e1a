"""Faults end to end: Telegram flood control, dropped connections, cancel, unexpected errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from telegram.ext import Application

from services.storage.profiles import ProfileStore
from tests.actors import Actor
from tests.doubles.dashscope import FakeDashScope
from tests.doubles.telegram import FakeTelegram
from tests.harness import jpeg, make_settings, running_bot


async def test_flood_control_on_the_result_delays_it_but_never_drops_it(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 4001)
    tg.flood(method="sendPhoto", chat_id=ann.chat_id, retry_after=1, count=2)
    since = await ann.try_on(top=jpeg(seed=1))
    result = await ann.result(since, timeout=20)
    refused = [c for c in tg.calls_of("sendPhoto") if c.status == 429]
    assert len(refused) == 2 and result.photo
    assert refused[-1].time + 0.9 <= tg.calls_of("sendPhoto")[-1].time  # waited as told


@pytest.mark.parametrize("fault", ["fail", "drop"])
async def test_network_faults_on_the_result_are_retried(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    fault: str,
) -> None:
    if fault == "fail":
        tg.fail_next("sendPhoto", status=502, count=2)
    else:
        tg.drop_next("sendPhoto", count=1)
    ann = Actor(tg, 4002)
    since = await ann.try_on(top=jpeg(seed=2))
    await ann.result(since, timeout=20)
    assert len([m for m in tg.messages_to(ann.chat_id) if m.kind == "photo"]) == 1


async def test_status_edits_are_skipped_under_flood_control(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ds.hold_tasks()
    ann = Actor(tg, 4003)
    tg.flood(method="editMessageText", chat_id=ann.chat_id, retry_after=3, count=1)
    since = await ann.try_on(top=jpeg(seed=3))
    await tg.wait_for(lambda: any(c.status == 429 for c in tg.calls_of("editMessageText")))
    await ds.wait_for(lambda: bool(ds.submits))
    ds.complete(ds.submits[0]["task_id"])
    await ann.result(since)  # the flood wait is honoured, then the result goes out


async def test_dropped_connections_at_every_dashscope_endpoint(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    # aiohttp resends a GET once by itself, so two drops reach the client's own retry.
    ds.drop_next("policy", count=2, process=False)
    ds.drop_next("upload", count=1, process=False)
    ds.drop_next("query", count=2)
    ds.drop_next("result", count=2)
    ann = Actor(tg, 4004)
    since = await ann.try_on(top=jpeg(seed=4))
    await ann.result(since, timeout=20)
    assert len(ds.submits) == 1


async def test_lost_submit_answer_is_never_resubmitted_silently(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ds.drop_next("submit", count=1)  # DashScope created the task; the answer got lost
    ann = Actor(tg, 4005)
    since = await ann.try_on(top=jpeg(seed=5))
    await ann.result(since)  # its task, found in the task list, was adopted
    assert len(ds.submits) == 1 and len(ds.tasks) == 1


@pytest.fixture
async def slow_queue(tg: FakeTelegram, tmp_path: Path) -> AsyncIterator[FakeDashScope]:
    async with FakeDashScope(pending_seconds=60, running_seconds=0.1) as fake:
        yield fake


async def test_cancel_while_pending_cancels_the_task(
    tg: FakeTelegram, slow_queue: FakeDashScope, tmp_path: Path
) -> None:
    settings = make_settings(tg.base_url, slow_queue.base_url, tmp_path / "data")
    async with running_bot(settings):
        ann = Actor(tg, 4006)
        since = await ann.try_on(top=jpeg(seed=6))
        await slow_queue.wait_for(lambda: bool(slow_queue.submits))
        await ann.command("cancel", predicate=lambda m: "Canceled" in m.body)
        assert slow_queue.cancels == [slow_queue.submits[0]["task_id"]]
        assert not any(m.kind == "photo" for m in tg.sent[since:])


async def test_cancel_while_running_says_what_will_happen(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ds.hold_tasks()
    ann = Actor(tg, 4007)
    since = await ann.try_on(top=jpeg(seed=7))
    await ds.wait_for(
        lambda: bool(ds.submits) and ds.tasks[ds.submits[0]["task_id"]].status == "RUNNING"
    )
    reply = await ann.command("cancel")
    assert "can't be stopped" in reply.body
    ds.complete(ds.submits[0]["task_id"])
    await ann.result(since)


async def test_cancel_before_submit_stops_the_job(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ds.delay_next("policy", 5)  # uploads are slow: the job is still preparing
    ann = Actor(tg, 4008)
    await ann.command("tryon")
    await ann.photo(jpeg(seed=8))
    await ann.photo(jpeg(seed=9))
    ann.tg.send_command(ann.chat, ann.user, "skip")
    await tg.wait_for(lambda: any("Checking" in m.body for m in tg.messages_to(ann.chat_id)))
    await ann.command("cancel", predicate=lambda m: "Canceled" in m.body)
    await ds.wait_for(lambda: ds.policy_calls >= 1)
    assert ds.submits == []


async def test_unexpected_error_apologises_and_leaves_others_unaffected(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    original = ProfileStore.get

    async def broken(self: ProfileStore, user_id: int) -> object:
        if user_id == 4009:
            raise RuntimeError("database on fire")
        return await original(self, user_id)

    monkeypatch.setattr(ProfileStore, "get", broken)
    ann, bob = Actor(tg, 4009), Actor(tg, 4010, name="Bob")
    with caplog.at_level(logging.ERROR):
        apology = await ann.command("tryon")
    assert "Sorry" in apology.body and "fire" not in apology.body
    assert any("database on fire" in r.getMessage() or r.exc_info for r in caplog.records)
    since = await bob.try_on(top=jpeg(seed=10))
    await bob.result(since)
    monkeypatch.setattr(ProfileStore, "get", original)
    step1 = await ann.command("tryon")  # Ann's state is consistent: she simply starts again
    assert "Step 1" in step1.body
