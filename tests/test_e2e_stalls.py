"""No chat stalls the bot: flood control, bursts, blocked users, background loops (issue 10).

End to end: the real Application over HTTP against the test doubles. Timings are
asserted against the flood wait still in force, not against sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from telegram.ext import Application

from bot.settings import Settings
from handlers import bursts, drafts, housekeeping
from handlers.bursts import FLOOD_MAX, MUTE_SECONDS
from handlers.texts import Texts
from tests.actors import Actor
from tests.doubles.dashscope import FakeDashScope
from tests.doubles.telegram import FakeTelegram
from tests.harness import handled, jpeg, make_settings, running_bot, services_of

TEXTS = Texts.load()
GROUP_ID = -100_222


def text(key: str, **values: Any) -> str:
    return TEXTS.get("en", key, **values)


# ---- one chat's flood wait holds up nobody ------------------------------------------------


async def test_another_chats_help_is_answered_while_one_chat_waits_out_40_s(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann, zed = Actor(tg, 7001), Actor(tg, 7002, name="Zed")
    tg.flood("sendMessage", ann.chat_id, retry_after=40)
    tg.send_command(ann.chat, ann.user, "help")
    refused = await tg.wait_for_call("sendMessage", lambda c: c.status == 429)
    started = time.monotonic()
    answer = await zed.command("help")
    elapsed = time.monotonic() - started
    assert "Virtual try-on" in answer.body
    assert elapsed < 1.0, elapsed
    # Ann's chat is still under its 40 s flood wait: her answer waits in the background,
    # queued, and nothing else was tried in her chat.
    gateway = services_of(bot).gateway
    assert gateway.budget.blocked_for(ann.chat_id) > 38
    assert gateway.queued() == 1
    assert [c.status for c in tg.calls_to(ann.chat_id)] == [429]
    assert refused.time < tg.calls_of("sendMessage")[-1].time


async def test_ann_asking_for_help_twice_under_flood_control_does_not_wait(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    """Her own next update is not held up by her chat's flood wait either: the first
    answer is queued, the second is queued behind it, in order."""
    ann = Actor(tg, 7003)
    tg.flood("sendMessage", ann.chat_id, retry_after=1)
    tg.send_command(ann.chat, ann.user, "help")
    await tg.wait_for_call("sendMessage", lambda c: c.status == 429)
    started = time.monotonic()
    await ann.command("tryon", predicate=lambda m: "Step 1" in m.body, timeout=5)
    bodies = [m.body for m in tg.messages_to(ann.chat_id)]
    assert "Virtual try-on" in bodies[0] and "Step 1" in bodies[1]  # in order, after the wait
    assert time.monotonic() - started < 3


@pytest.fixture
def private_settings(tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path) -> Settings:
    return make_settings(
        tg.base_url, ds.base_url, tmp_path / "data", allowed_chats=frozenset({7011})
    )


@pytest.fixture
async def private_bot(private_settings: Settings) -> AsyncIterator[Application]:  # type: ignore[type-arg]
    async with running_bot(private_settings) as app:
        yield app


async def test_a_stranger_spamming_under_flood_control_delays_no_one(
    tg: FakeTelegram,
    ds: FakeDashScope,
    private_bot: Application,  # type: ignore[type-arg]
) -> None:
    allowed, stranger = Actor(tg, 7011), Actor(tg, 7012, name="Eve")
    tg.flood("sendMessage", stranger.chat_id, retry_after=5, count=3)
    for n in range(3):
        tg.send_text(stranger.chat, stranger.user, f"hi {n}")
    await tg.wait_for_call("sendMessage", lambda c: c.status == 429)
    started = time.monotonic()
    answer = await allowed.command("help")
    assert "Virtual try-on" in answer.body
    assert time.monotonic() - started < 1.0
    await handled(tg, private_bot)
    # One refusal was tried and met flood control: it was dropped, not waited for; the
    # other "hi"s were one burst with it.
    assert [c.status for c in tg.calls_to(stranger.chat_id)] == [429]
    assert services_of(private_bot).gateway.queued() == 0


# ---- bursts --------------------------------------------------------------------------------


async def test_a_15_photo_burst_gets_one_reply_and_no_submit(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 7021)
    await ann.command("tryon")
    since = len(tg.sent)
    photos = [tg.send_photo(ann.chat, ann.user, jpeg(seed=100 + n)) for n in range(15)]
    await handled(tg, bot)
    replies = tg.sent[since:]
    assert len(replies) == 1, [m.body for m in replies]
    assert "Step 2" in replies[0].body and text("burst_taken_person") in replies[0].body
    assert ds.submits == [] and len(tg.calls_of("getFile")) == 1
    draft = bot.user_data[7021]["flows"][str(ann.chat_id)]
    assert draft["person"]["unique_id"] == photos[0]["photo"][-1]["file_unique_id"]
    # The flow goes on normally: the next photo, sent after the prompt, is the top.
    step3 = await ann.photo(jpeg(seed=200))
    assert "Step 3" in step3.body


async def test_a_burst_in_a_group_is_answered_once_too(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    group = tg.group(GROUP_ID, "Friends")
    ann = Actor(tg, 7022, chat=group)
    prompt = await ann.command("tryon")
    since = len(tg.sent)
    for n in range(6):
        tg.send_photo(group, ann.user, jpeg(seed=300 + n), reply_to=prompt)
    await handled(tg, bot)
    replies = tg.sent[since:]
    assert len(replies) == 1 and "Step 2" in replies[0].body, [m.body for m in replies]
    assert text("burst_taken_person") in replies[0].body
    assert ds.submits == []


async def test_a_quick_skip_after_a_photo_is_no_burst(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    """Commands never belong to a burst, and each (chat, user) is handled in order: a
    /skip sent right behind the photo lands in the step after it."""
    ann = Actor(tg, 7023)
    await ann.command("tryon")
    await ann.photo(jpeg(seed=1))
    since = len(tg.sent)
    tg.send_photo(ann.chat, ann.user, jpeg(seed=2))  # the top…
    tg.send_command(ann.chat, ann.user, "skip")  # …and, at once, skip the bottom
    await ann.result(since)
    assert len(ds.submits) == 1 and "top_garment_url" in ds.submits[0]["body"]["input"]


async def test_a_user_who_keeps_flooding_is_ignored_for_a_while_with_one_notice(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann, zed = Actor(tg, 7024), Actor(tg, 7025, name="Zed")
    since = len(tg.sent)
    for _ in range(FLOOD_MAX + 10):
        tg.send_command(ann.chat, ann.user, "help")
    await handled(tg, bot)
    replies = [m.body for m in tg.sent[since:]]
    muted = text("flood_muted", n=MUTE_SECONDS)
    assert replies.count(muted) == 1 and len(replies) == FLOOD_MAX + 1
    assert replies[-1] == muted
    tg.send_command(ann.chat, ann.user, "tryon")  # still muted: quietly ignored
    await handled(tg, bot)
    assert len(tg.sent) == since + FLOOD_MAX + 1
    assert "Virtual try-on" in (await zed.command("help")).body  # others are unaffected


# ---- blocked users ---------------------------------------------------------------------------


async def test_a_blocked_user_gets_at_most_one_call_after_the_first_403(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 7031)
    ds.hold_tasks()
    await ann.try_on(top=jpeg(seed=1))
    await ds.wait_for(lambda: len(ds.submits) == 1)
    tg.block_bot(ann.user)
    # The status ticker meets the 403 first (an edit or a chat action)…
    await tg.wait_for(lambda: tg.forbidden_count(ann.chat_id) >= 1 or None)
    # …then the result, a failure notice and the status deletion would follow.
    ds.complete(ds.submits[0]["task_id"])
    store = services_of(bot).store
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while await store.active_for(ann.chat_id, 7031):
        assert loop.time() < deadline, "the job did not end"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # a straggling ticker call would show up here
    assert tg.forbidden_count(ann.chat_id) == 1
    assert tg.calls_after_forbidden(ann.chat_id) <= 1, tg.summary()
    assert services_of(bot).gateway.is_unreachable(ann.chat_id)

    # Writing again (after unblocking) clears the mark.
    tg.block_bot(ann.user, blocked=False)
    answer = await ann.command("help")
    assert "Virtual try-on" in answer.body
    assert not services_of(bot).gateway.is_unreachable(ann.chat_id)


# ---- background loops ------------------------------------------------------------------------


async def test_the_idle_flow_sweeper_survives_an_exception(
    tg: FakeTelegram,
    ds: FakeDashScope,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    original = drafts.expired_drafts
    failures: list[int] = []

    def broken(*args: object, **kw: object) -> object:
        if len(failures) < 3:
            failures.append(1)
            raise RuntimeError("sweeper on fire")
        return original(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(housekeeping, "expired_drafts", broken)  # what the sweeper calls
    settings = make_settings(tg.base_url, ds.base_url, tmp_path / "data", conversation_timeout=1)
    with caplog.at_level(logging.ERROR):
        async with running_bot(settings) as app:
            ann = Actor(tg, 7041)
            since = len(tg.sent)
            await ann.command("tryon")
            note = await ann.next_from_bot(
                since, lambda m: m.body == text("flow_timed_out"), timeout=10
            )
            assert note is not None and len(failures) == 3
            sweeper = app.bot_data["background_tasks"][0]
            assert not sweeper.done()
        assert sweeper.cancelled()  # stopped cleanly at shutdown
    assert any("sweeper on fire" in str(r.exc_info) for r in caplog.records if r.exc_info)


async def test_full_size_under_flood_control_holds_up_not_even_its_user(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 7051)
    since = await ann.try_on(top=jpeg(seed=1))
    result = await ann.result(since)
    tg.flood("sendDocument", ann.chat_id, retry_after=40)
    tg.press_button(ann.chat, ann.user, result, result.button_data("Full size"))
    await tg.wait_for_call("sendDocument", lambda c: c.status == 429)
    started = time.monotonic()
    tg.send_command(ann.chat, ann.user, "help")  # her next update is handled at once…
    await handled(tg, bot, timeout=2)
    assert time.monotonic() - started < 1.5
    # …and its answer waits, in order, behind the file, for the chat's flood wait to end.
    assert services_of(bot).gateway.queued() == 2
    assert [c.method for c in tg.calls_to(ann.chat_id)][-1] == "sendDocument"


async def test_user_data_of_users_without_a_flow_is_forgotten(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    visitors = [Actor(tg, 7061 + n, name=f"V{n}") for n in range(5)]
    for visitor in visitors:
        await visitor.command("help")
    ann = Actor(tg, 7070)
    await ann.command("tryon")  # a flow: her draft stays
    await tg.wait_for(lambda: all(v.user["id"] not in bot.user_data for v in visitors) or None)
    assert "flows" in bot.user_data[7070]


async def test_a_burst_seen_only_after_the_prompt_gets_one_notice(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rest of a burst may reach the bot only after the first photo's prompt went out
    (a later getUpdates batch): then one notice, replying to the photo that was taken."""
    monkeypatch.setattr(bursts, "_queued_photos", lambda *_: 0)
    ann = Actor(tg, 7081)
    await ann.command("tryon")
    since = len(tg.sent)
    first = tg.send_photo(ann.chat, ann.user, jpeg(seed=1))
    for n in range(3):
        tg.send_photo(ann.chat, ann.user, jpeg(seed=2 + n))
    await handled(tg, bot)
    replies = tg.sent[since:]
    assert [("Step 2" in m.body, m.body == text("burst_taken_person")) for m in replies] == [
        (True, False),
        (False, True),
    ]
    assert replies[1].reply_to_message_id == first["message_id"]  # "this one was taken"
    assert len(tg.calls_of("getFile")) == 1 and ds.submits == []


async def test_try_again_under_flood_control_does_not_wait_for_its_status_line(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 7091)
    ds.script_next_task("FAILED", "InternalError")
    since = await ann.try_on(top=jpeg(seed=1))
    notice = await ann.next_from_bot(since, lambda m: "Try again" in str(m.buttons))
    tg.flood("sendMessage", ann.chat_id, retry_after=40)
    since = len(tg.sent)
    started = time.monotonic()
    tg.press_button(ann.chat, ann.user, notice, notice.button_data("Try again"))
    await tg.wait_for_call("sendMessage", lambda c: c.status == 429)
    await handled(tg, bot, timeout=2)
    assert time.monotonic() - started < 1.5
    # The try-on runs all the same; its status line, a courtesy, is not waited for.
    await ds.wait_for(lambda: len(ds.submits) == 2)
