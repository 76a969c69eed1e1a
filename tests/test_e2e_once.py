"""A paid try-on runs once and its result reaches the user once (issue 9), end to end
against the real PTB Application: lost submit answers reconciled with the task list,
overload waited out, results kept through Telegram trouble, forged buttons refused."""

from __future__ import annotations

import asyncio
import logging

import pytest
from telegram.ext import Application

from handlers.context import BotServices
from services.model import JobState
from tests.actors import Actor
from tests.doubles.dashscope import FakeDashScope
from tests.doubles.telegram import JSON, FakeTelegram, SentMessage
from tests.harness import jpeg, services_of

GROUP_ID = -1009100


def tasks_created(ds: FakeDashScope) -> int:
    return sum(ds.tasks_created.values())


def results(tg: FakeTelegram, chat_id: int) -> list[SentMessage]:
    return [m for m in tg.messages_to(chat_id) if m.kind in ("photo", "document") and m.buttons]


async def states(svc: BotServices, user_id: int) -> list[JobState]:
    rows = await svc.store._db.fetchall(
        "SELECT state FROM jobs WHERE user_id = ? ORDER BY created_at", (user_id,)
    )
    return [JobState(row["state"]) for row in rows]


async def until_states(
    tg: FakeTelegram, svc: BotServices, user_id: int, expected: list[JobState]
) -> None:
    for _ in range(500):
        if await states(svc, user_id) == expected:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{await states(svc, user_id)} != {expected}")


async def answer_to(tg: FakeTelegram, query_id: str) -> JSON:
    return await tg.wait_for(
        lambda: next(
            (a for a in tg.callback_answers if a.get("callback_query_id") == query_id), None
        )
    )


# ---- 2: a submit answered 5xx or reset after the task was created -----------------------


@pytest.mark.parametrize("fault", ["502", "504", "reset"])
async def test_a_lost_submit_answer_is_reconciled_to_exactly_one_task(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    fault: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if fault == "reset":
        ds.drop_next("submit")  # the task is created, then the connection is reset
    else:
        ds.submit_then_fail(int(fault))
    ann = Actor(tg, 9001)
    with caplog.at_level(logging.INFO, logger="services.tryon"):
        since = await ann.try_on(top=jpeg(seed=2))
        await ann.result(since)
    assert tasks_created(ds) == 1 and ds.requests["submit"] == 1
    assert ds.list_calls >= 1
    assert "reconciled: adopted task" in caplog.text
    assert not any("Try again" in str(m.buttons) for m in tg.messages_to(ann.chat_id))


async def test_an_unprovable_submit_asks_and_runs_again_only_when_pressed(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ds.fail_next("submit", 502)  # a gateway page, and in truth nothing was created
    ann = Actor(tg, 9002)
    since = await ann.try_on(top=jpeg(seed=2))
    notice = await ann.next_from_bot(since, lambda m: "Try again" in str(m.buttons), timeout=20)
    assert tasks_created(ds) == 0 and ds.list_calls >= 2
    since = len(tg.sent)
    await ann.press(notice, "Try again", predicate=lambda m: "Checking" in m.body)
    await ann.result(since)
    assert tasks_created(ds) == 1


# ---- issue 10, submit side: overload waited out ------------------------------------------


async def test_an_overloaded_model_keeps_the_job_in_line(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ds.fail_for("submit", 3.0, 503, "ModelUnavailable")
    ann = Actor(tg, 9003)
    since = await ann.try_on(top=jpeg(seed=2))
    await ann.result(since, timeout=30)
    assert tasks_created(ds) == 1 and ds.requests["submit"] > 2
    status = [m for m in tg.messages_to(ann.chat_id) if any("very busy" in e for e in m.edits)]
    assert status  # the status line said the service is busy
    assert not any("very busy right now" in m.body for m in tg.messages_to(ann.chat_id))


async def test_a_vanished_upload_is_uploaded_again_and_retried_once(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 9004)
    await ann.command("tryon")
    await ann.photo(jpeg(seed=1))
    await ann.photo(jpeg(seed=2))
    await ds.wait_for(lambda: len(ds.objects) >= 2)
    for key in list(ds.objects):
        ds.vanish(key)  # gone early: the task will fail to fetch them
    since = len(tg.sent)
    await ann.command("skip")
    await ann.result(since, timeout=20)
    assert tasks_created(ds) == 2  # the first failed without an image (not billed)
    assert len(results(tg, ann.chat_id)) == 1


# ---- 3: a paid result is kept through Telegram trouble -----------------------------------


async def test_a_closed_topic_falls_back_to_the_general_thread(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    forum = tg.group(GROUP_ID, "Shop", forum=True)
    user = tg.user(9005, "Ann", language_code="en")
    topic = tg.create_topic(forum, user, "Red")
    ann = Actor(tg, 9005, chat=forum, thread_id=topic)
    ds.hold_tasks()
    await ann.try_on(top=jpeg(seed=2))
    await ds.wait_for(lambda: bool(ds.tasks))
    tg.close_topic(forum, topic)
    ds.complete(next(iter(ds.tasks)))
    result = await tg.wait_for(lambda: next(iter(results(tg, GROUP_ID)), None), timeout=15)
    assert result.thread_id is None  # the general thread
    assert tasks_created(ds) == 1


async def test_a_deleted_topic_still_gets_the_failure_notice(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    forum = tg.group(GROUP_ID, "Shop", forum=True)
    user = tg.user(9006, "Ann", language_code="en")
    topic = tg.create_topic(forum, user, "Red")
    ann = Actor(tg, 9006, chat=forum, thread_id=topic)
    ds.hold_tasks()
    await ann.try_on(top=jpeg(seed=2))
    await ds.wait_for(lambda: bool(ds.tasks))
    tg.delete_topic(forum, topic)
    ds.fail(next(iter(ds.tasks)), "InvalidPerson")
    notice = await tg.wait_for(
        lambda: next((m for m in tg.messages_to(GROUP_ID) if "didn't work" in m.body), None),
        timeout=15,
    )
    assert notice.thread_id is None


async def test_a_blocked_user_gets_the_result_when_they_come_back(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    svc = services_of(bot)
    ann = Actor(tg, 9007)
    ds.hold_tasks()
    await ann.try_on(top=jpeg(seed=2))
    await ds.wait_for(lambda: bool(ds.tasks))
    tg.block_bot(ann.user)
    ds.complete(next(iter(ds.tasks)))
    await until_states(tg, svc, 9007, [JobState.UNDELIVERED])
    # Once the block is seen (by the result or a status edit before it), nothing more is
    # sent: at most one call after the first 403, and the result is kept.
    sends = [c for c in tg.calls_to(ann.chat_id) if c.method.lower() == "sendphoto"]
    assert all(c.status == 403 for c in sends) and len(sends) <= 1
    assert tg.calls_after_forbidden(ann.chat_id) <= 1
    assert results(tg, ann.chat_id) == []
    tg.block_bot(ann.user, blocked=False)
    since = len(tg.sent)
    await ann.command("start")
    await ann.result(since)
    await until_states(tg, svc, 9007, [JobState.DELIVERED])
    assert tasks_created(ds) == 1


async def test_flood_control_beyond_the_wait_keeps_the_result(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    caplog: pytest.LogCaptureFixture,
) -> None:
    svc = services_of(bot)
    ann = Actor(tg, 9008)
    tg.flood("sendPhoto", ann.chat_id, retry_after=3600)
    with caplog.at_level(logging.WARNING, logger="services.tryon"):
        await ann.try_on(top=jpeg(seed=2))
        await tg.wait_for(lambda: "result not delivered yet" in caplog.text or None, timeout=15)
    assert await states(svc, 9008) == [JobState.SUCCEEDED]  # kept, not failed
    assert not any("couldn't" in m.body for m in tg.messages_to(ann.chat_id))


async def test_try_again_after_a_delivery_problem_resends_without_a_submit(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 9009)
    tg.fail_next("sendPhoto", 400, "Bad Request: wrong file identifier/HTTP URL specified")
    since = await ann.try_on(top=jpeg(seed=2))
    notice = await ann.next_from_bot(since, lambda m: "didn't accept the picture" in m.body)
    assert "fetch your photos" not in notice.body
    since = len(tg.sent)
    await ann.press(notice, "Try again", predicate=lambda m: m.kind == "photo")
    assert len(results(tg, ann.chat_id)) == 1
    assert tasks_created(ds) == 1 and ds.requests["submit"] == 1


async def test_an_ambiguous_send_is_resent_at_most_once(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    caplog: pytest.LogCaptureFixture,
) -> None:
    svc = services_of(bot)
    ann = Actor(tg, 9010)
    tg.ambiguous_next("sendPhoto", count=5)  # posted, but every answer is lost
    with caplog.at_level(logging.WARNING):
        await ann.try_on(top=jpeg(seed=2))
        await until_states(tg, svc, 9010, [JobState.DELIVERED])
    assert tg.call_counts()["sendphoto"] == 2
    assert "duplicate is possible" in caplog.text
    assert tasks_created(ds) == 1


# ---- 7: forged buttons -------------------------------------------------------------------


@pytest.mark.parametrize("action", ["again", "retry", "full", "take", "hd", "hist"])
async def test_forged_callback_data_changes_nothing(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    action: str,
) -> None:
    ann = Actor(tg, 9011)
    since = await ann.try_on(top=jpeg(seed=2))
    result = await ann.result(since)
    job_id = result.button_data("Full size").split(":")[1]
    if action == "retry":  # a failed job of Ann's, for the forged retry to aim at
        ds.script_next_task("FAILED", "InternalError")
        since = await ann.try_on(top=jpeg(seed=3))
        notice = await ann.next_from_bot(since, lambda m: "Try again" in str(m.buttons))
        job_id = notice.button_data("Try again").split(":")[1]
    mallory = Actor(tg, 9012, name="Mal")
    prompt = await mallory.command("tryon")
    submits, sent = ds.requests["submit"], len(tg.messages_to(mallory.chat_id))
    query_id = tg.press_button(
        mallory.chat, mallory.user, prompt, f"{action}:{job_id}:{mallory.user['id']}", check=False
    )
    answer = await answer_to(tg, query_id)
    assert str(answer.get("show_alert")).lower() == "true"
    assert "someone else" in str(answer.get("text"))
    await mallory.command("help")  # a round trip: everything before it was handled
    assert ds.requests["submit"] == submits
    assert not any(m.kind in ("photo", "document") for m in tg.messages_to(mallory.chat_id)[sent:])
    assert not any("Step 2" in m.body for m in tg.messages_to(mallory.chat_id)[sent:])
