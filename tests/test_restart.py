"""Never lose a try-on: the real bot as a subprocess, killed (SIGKILL/SIGTERM) at each
critical point and restarted on the same data directory."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.settings import Settings
from tests.actors import Actor
from tests.doubles.dashscope import FakeDashScope
from tests.doubles.telegram import FakeTelegram, SentMessage
from tests.harness import BotProcess, jpeg, make_settings, settings_env


class Bot:
    """Starts and stops `python -m bot` on one data directory, as an operator would."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self.process: BotProcess | None = None
        self.runs: list[BotProcess] = []

    async def start(self) -> None:
        self.process = BotProcess(settings_env(self.settings), self.workdir)
        self.process.start()
        self.runs.append(self.process)
        await self.process.wait_for_log("Bot @TryOnTestBot ready")

    async def stop(self, sig: signal.Signals = signal.SIGKILL) -> float:
        """Sends the signal; returns how long the process took to exit."""
        assert self.process is not None
        started = time.monotonic()
        self.process.signal(sig)
        await self.process.wait_exit()
        return time.monotonic() - started

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        path = self.settings.database_path
        if not path.exists():
            return []
        with sqlite3.connect(path) as conn:
            return list(conn.execute(sql, params))

    async def until(self, check: Callable[[], object], timeout: float = 10.0) -> None:
        """Waits until the database (what a restart will find) satisfies `check`."""
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"not reached in {timeout} s:\n{self.logs()}"
            await asyncio.sleep(0.02)

    def job_states(self) -> list[str]:
        return [row[0] for row in self.rows("SELECT state FROM jobs ORDER BY created_at")]

    def logs(self) -> str:
        return "\n".join(run.log_text() for run in self.runs)


@pytest.fixture
async def operator(tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path) -> AsyncIterator[Bot]:
    settings = make_settings(tg.base_url, ds.base_url, tmp_path / "data", request_timeout=10.0)
    async with bot_process(settings, tmp_path) as bot:
        yield bot


@asynccontextmanager
async def bot_process(settings: Settings, workdir: Path) -> AsyncIterator[Bot]:
    bot = Bot(settings, workdir)
    try:
        yield bot
    finally:
        for run in bot.runs:
            run.kill()
    logs = bot.logs()
    assert settings.telegram_bot_token not in logs
    assert settings.dashscope_api_key not in logs
    assert "Traceback" not in logs


def results(tg: FakeTelegram, chat_id: int) -> list[SentMessage]:
    return [m for m in tg.messages_to(chat_id) if m.kind in ("photo", "document") and m.buttons]


async def start_job(ann: Actor, ds: FakeDashScope) -> int:
    """Runs the flow up to the submit-triggering /skip; returns the tg.sent index."""
    await ann.command("tryon")
    await ann.photo(jpeg(seed=1))
    await ann.photo(jpeg(seed=2))
    since = len(ann.tg.sent)
    ann.tg.send_command(ann.chat, ann.user, "skip")
    return since


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
async def test_flow_continues_after_a_restart_and_nothing_is_asked_twice(
    tg: FakeTelegram, ds: FakeDashScope, operator: Bot, sig: signal.Signals
) -> None:
    await operator.start()
    ann = Actor(tg, 3001)
    await ann.command("tryon")
    step2 = await ann.photo(jpeg(seed=1))
    assert "Step 2" in step2.body
    await operator.until(lambda: operator.rows("SELECT state FROM conversations") == [('"top"',)])
    # The step is saved at once; its upload runs on in the background: let it finish, so
    # the restart finds it (a kill before that would rightly upload the photo again).
    await operator.until(lambda: len(operator.rows("SELECT url FROM uploads")) == 1)
    await operator.stop(sig)
    # The top garment arrives while the bot is down: it is processed after the restart.
    since = len(tg.sent)
    tg.send_photo(ann.chat, ann.user, jpeg(seed=2))
    await operator.start()
    step3 = await ann.next_from_bot(since)
    assert "Step 3" in step3.body
    since = len(tg.sent)
    await ann.command("skip")
    await ann.result(since)
    assert len(ds.submits) == 1
    assert ds.upload_count == 2  # the person photo was not uploaded (or asked for) again


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
async def test_running_task_resumes_and_is_delivered_once(
    tg: FakeTelegram, ds: FakeDashScope, operator: Bot, sig: signal.Signals
) -> None:
    ds.hold_tasks()
    await operator.start()
    ann = Actor(tg, 3002)
    await start_job(ann, ds)
    await operator.until(lambda: operator.job_states() == ["running"])
    took = await operator.stop(sig)
    if sig is signal.SIGTERM:
        assert took < 10.0  # a clean stop, well inside Docker's grace period
    ds.complete(ds.submits[0]["task_id"])
    await operator.start()
    await tg.wait_for(lambda: results(tg, ann.chat_id))
    await operator.until(lambda: operator.job_states() == ["delivered"])
    assert len(results(tg, ann.chat_id)) == 1
    assert len(ds.submits) == 1


async def test_queued_job_is_submitted_after_a_restart(
    tg: FakeTelegram, ds: FakeDashScope, operator: Bot
) -> None:
    ds.delay_next("policy", 30)  # the job is stuck before submitting when the bot dies
    await operator.start()
    ann = Actor(tg, 3003)
    await ann.command("tryon")
    # The first photo's upload is deferred by the slow getPolicy: the flow still moves on.
    await ann.photo(jpeg(seed=1), timeout=20)
    await ann.photo(jpeg(seed=2))
    tg.send_command(ann.chat, ann.user, "skip")
    await operator.until(lambda: operator.job_states() == ["queued"])
    await operator.stop(signal.SIGKILL)
    await operator.start()
    await tg.wait_for(lambda: results(tg, ann.chat_id), timeout=15)
    assert len(ds.submits) == 1 and len(results(tg, ann.chat_id)) == 1


async def test_crash_between_submit_and_task_id_is_reconciled(
    tg: FakeTelegram, ds: FakeDashScope, operator: Bot
) -> None:
    ds.delay_next("submit", 20)  # DashScope accepts the task but the answer is slow
    await operator.start()
    ann = Actor(tg, 3004)
    since = await start_job(ann, ds)
    await operator.until(lambda: operator.job_states() == ["submitting"])
    await ds.wait_for(lambda: bool(ds.submits))
    await operator.stop(signal.SIGKILL)
    await operator.start()
    await ann.result(since)
    await operator.until(lambda: operator.job_states() == ["delivered"])
    # The task found in the account's task list was adopted: never resubmitted.
    assert sum(ds.tasks_created.values()) == 1 and len(ds.submits) == 1
    assert ds.list_calls >= 1
    assert not any("restarted" in m.body for m in tg.messages_to(ann.chat_id))
    assert len(results(tg, ann.chat_id)) == 1
    assert "reconciled: adopted task" in operator.logs()


async def test_sigterm_during_a_submit_keeps_its_task_id(
    tg: FakeTelegram, ds: FakeDashScope, operator: Bot
) -> None:
    ds.delay_next("submit", 1.0)
    await operator.start()
    ann = Actor(tg, 3005)
    await start_job(ann, ds)
    await operator.until(lambda: operator.job_states() == ["submitting"])
    took = await operator.stop(signal.SIGTERM)
    assert took < 10.0
    assert operator.job_states() == ["running"]  # the shielded submit finished and was recorded
    await operator.start()
    await tg.wait_for(lambda: results(tg, ann.chat_id), timeout=15)
    assert len(ds.submits) == 1
    assert not any("restarted" in m.body for m in tg.messages_to(ann.chat_id))


async def test_task_forgotten_by_dashscope_is_reported(
    tg: FakeTelegram, ds: FakeDashScope, operator: Bot
) -> None:
    ds.hold_tasks()
    await operator.start()
    ann = Actor(tg, 3006)
    since = await start_job(ann, ds)
    await operator.until(lambda: operator.job_states() == ["running"])
    await operator.stop(signal.SIGKILL)
    ds.forget(ds.submits[0]["task_id"])  # as if the bot had been down for over 24 h
    await operator.start()
    notice = await ann.next_from_bot(since, lambda m: "expired" in m.body)
    assert "Try again" in str(notice.buttons)
    await operator.until(lambda: operator.job_states() == ["failed"])


async def test_expired_result_url_is_reported(
    tg: FakeTelegram, ds: FakeDashScope, operator: Bot
) -> None:
    ds.hold_tasks()
    await operator.start()
    ann = Actor(tg, 3007)
    since = await start_job(ann, ds)
    await operator.until(lambda: operator.job_states() == ["running"])
    await operator.stop(signal.SIGKILL)
    ds.complete(ds.submits[0]["task_id"])
    await ds.wait_for(lambda: ds.tasks[ds.submits[0]["task_id"]].status == "SUCCEEDED")
    ds.expire_results()
    await operator.start()
    await ann.next_from_bot(since, lambda m: "expired" in m.body)
    assert results(tg, ann.chat_id) == []


async def test_idle_flow_expires_across_a_restart(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path
) -> None:
    settings = make_settings(tg.base_url, ds.base_url, tmp_path / "data", conversation_timeout=1.0)
    async with bot_process(settings, tmp_path) as bot:
        await bot.start()
        ann = Actor(tg, 3008)
        await ann.command("tryon")
        await bot.until(lambda: bot.rows("SELECT user_id FROM user_data"))
        await bot.stop(signal.SIGKILL)
        await asyncio.sleep(1.1)  # the idle time itself is what this test is about
        since = len(tg.sent)
        await bot.start()
        note = await ann.next_from_bot(since, lambda m: "long pause" in m.body)
        assert note.chat_id == ann.chat_id
        await bot.until(lambda: not bot.rows("SELECT user_id FROM user_data"))
        await bot.until(lambda: not bot.rows("SELECT key FROM conversations"))
        reply = await ann.photo(jpeg())  # the old flow is gone: no silent resurrection
        assert "/tryon" in reply.body


# ---- issue 9: once and only once, across SIGKILL and SIGTERM ------------------------------


def result_photos(tg: FakeTelegram, chat_id: int) -> int:
    return len(results(tg, chat_id))


# Every await of the pipeline from submit to delivered where the process can die, as a
# request the doubles hold: (double, endpoint, the request that shows we are there).
KILL_POINTS = ["upload", "submit", "query", "result", "edit"]


@pytest.mark.parametrize("point", KILL_POINTS)
async def test_sigkill_at_every_await_gives_one_task_and_one_photo(
    tg: FakeTelegram, ds: FakeDashScope, operator: Bot, point: str
) -> None:
    if point == "upload":
        ds.delay_next("policy", 30)  # the job waits for its uploads
    elif point == "submit":
        ds.delay_next("submit", 30)  # created, the answer held
    elif point == "query":
        ds.hold_tasks()  # polling a running task
    elif point == "result":
        ds.delay_next("result", 30)  # downloading the result
    else:
        ds.hold_tasks()  # then a status edit on the wire while the task runs
    await operator.start()
    ann = Actor(tg, 3100 + KILL_POINTS.index(point))
    if point == "upload":
        await ann.command("tryon")
        await ann.photo(jpeg(seed=1), timeout=20)
        await ann.photo(jpeg(seed=2))
        tg.send_command(ann.chat, ann.user, "skip")
        await operator.until(lambda: operator.job_states() == ["queued"])
    else:
        await start_job(ann, ds)
        if point == "submit":
            await ds.wait_for(lambda: bool(ds.submits))
        elif point == "query":
            await operator.until(lambda: operator.job_states() == ["running"])
        elif point == "result":
            await operator.until(lambda: ds.requests["result"] >= 1)
        else:
            await operator.until(lambda: operator.job_states() == ["running"])
            edits = tg.call_counts()["editmessagetext"]
            tg.delay_next("editMessageText", 30)
            await operator.until(lambda: tg.call_counts()["editmessagetext"] > edits)
    await operator.stop(signal.SIGKILL)
    ds.hold_tasks(False)
    for task_id in list(ds.tasks):
        if ds.tasks[task_id].status not in ("SUCCEEDED", "FAILED"):
            ds.complete(task_id)
    await operator.start()
    await tg.wait_for(lambda: results(tg, ann.chat_id), timeout=20)
    await operator.until(lambda: operator.job_states() == ["delivered"])
    assert sum(ds.tasks_created.values()) == 1
    assert result_photos(tg, ann.chat_id) == 1


async def test_sigkill_while_the_result_send_is_on_the_wire_resends_at_most_once(
    tg: FakeTelegram, ds: FakeDashScope, operator: Bot
) -> None:
    """The documented exception: Telegram posted the photo, the process died before the
    answer. The restart cannot know, so the result is sent again (a duplicate, not a loss)."""
    tg.delay_next("sendPhoto", 30)
    await operator.start()
    ann = Actor(tg, 3109)
    await start_job(ann, ds)
    await operator.until(lambda: tg.call_counts()["sendphoto"] >= 1)
    await operator.stop(signal.SIGKILL)
    await operator.start()
    await operator.until(lambda: operator.job_states() == ["delivered"], timeout=20)
    assert sum(ds.tasks_created.values()) == 1
    assert 1 <= result_photos(tg, ann.chat_id) <= 2


async def test_sigkill_right_after_the_job_row_then_skip_again_submits_once(
    tg: FakeTelegram, ds: FakeDashScope, operator: Bot
) -> None:
    ds.delay_next("policy", 30)  # the job stays queued after its row is written
    await operator.start()
    ann = Actor(tg, 3110)
    await ann.command("tryon")
    await ann.photo(jpeg(seed=1), timeout=20)
    await ann.photo(jpeg(seed=2))
    tg.send_command(ann.chat, ann.user, "skip")
    await operator.until(lambda: operator.job_states() == ["queued"], timeout=20)
    await operator.stop(signal.SIGKILL)  # at once: no periodic flush had a chance
    # The job row, the dropped draft and the end of the flow were one transaction.
    assert operator.rows("SELECT state FROM conversations") == []
    await operator.start()
    since = len(tg.sent)
    tg.send_command(ann.chat, ann.user, "skip")  # the user repeats it
    await tg.wait_for(lambda: results(tg, ann.chat_id), timeout=20)
    await ann.command("help")  # a round trip: the repeated /skip was handled
    assert len(operator.job_states()) == 1 and sum(ds.tasks_created.values()) == 1
    assert result_photos(tg, ann.chat_id) == 1
    assert len(tg.messages_to(ann.chat_id)) > since


async def test_sigterm_during_send_delivers_once(
    tg: FakeTelegram, ds: FakeDashScope, operator: Bot
) -> None:
    tg.delay_next("sendPhoto", 1.5)  # the result is on the wire when SIGTERM comes
    await operator.start()
    ann = Actor(tg, 3111)
    await start_job(ann, ds)
    await tg.wait_for(lambda: tg.call_counts()["sendphoto"] >= 1 or None, timeout=20)
    took = await operator.stop(signal.SIGTERM)
    assert took < 8.0
    assert operator.job_states() == ["delivered"]  # finished within the grace, recorded
    await operator.start()
    await ann.command("help")
    assert result_photos(tg, ann.chat_id) == 1 and tg.call_counts()["sendphoto"] == 1


async def test_sigterm_never_waits_on_a_flood_controlled_group(
    tg: FakeTelegram, ds: FakeDashScope, operator: Bot
) -> None:
    group = tg.group(-1009200, "Shop")
    ds.hold_tasks()
    await operator.start()
    ann = Actor(tg, 3112, chat=group)
    await ann.command("tryon")
    await ann.photo(jpeg(seed=1))
    await ann.photo(jpeg(seed=2))
    tg.flood(None, group["id"], retry_after=20, count=100)  # everything to the group: 429
    tg.send_command(ann.chat, ann.user, "skip", reply_to=ann.last_prompt)
    await operator.until(lambda: operator.job_states() == ["running"], timeout=20)
    ds.complete(ds.submits[0]["task_id"])
    await operator.until(lambda: operator.job_states() == ["succeeded"])
    bob = Actor(tg, 3113, chat=group, name="Bob")
    tg.send_command(bob.chat, bob.user, "tryon")  # his prompt waits out the flood too
    await asyncio.sleep(1.0)  # the result and Bob's prompt are both waiting
    took = await operator.stop(signal.SIGTERM)
    assert took < 8.0
    assert operator.job_states() == ["succeeded"]  # resumable: delivered on the next start
    assert "was not yet resolved" not in operator.logs()


async def test_a_batch_survives_a_restart_and_arrives_as_one_album(
    tg: FakeTelegram, ds: FakeDashScope, operator: Bot
) -> None:
    """Issue 12: a batch killed mid-way resumes, and its results still come as one album."""
    ds.hold_tasks()
    await operator.start()
    ann = Actor(tg, 3009)
    await ann.command("tryon")
    await ann.photo(jpeg(seed=1))
    since = len(tg.sent)
    await tg.send_album_items(ann.chat, ann.user, [jpeg(seed=n) for n in (2, 3, 4)])
    offer = await ann.next_from_bot(since, lambda m: "Try each one on" in str(m.buttons))
    await ann.press(offer, "Try each one on", predicate=lambda m: "ready" in m.body)
    await operator.until(lambda: "running" in operator.job_states())
    await operator.stop(signal.SIGKILL)
    ds.hold_tasks(False)
    for submit in ds.submits:  # the line was empty: the batch may have had two running
        ds.complete(submit["task_id"])
    await operator.start()
    album = await tg.wait_for(  # an album, or one photo if only one try-on made it
        lambda: (
            [m for m in tg.messages_to(ann.chat_id) if (m.caption or "").startswith("👕")] or None
        ),
        timeout=20,
    )
    # Every garment is accounted for once: in the album, or named in its caption (a job
    # killed mid-submit is never resubmitted silently: the user is told).
    captions = [m.caption or "" for m in album]
    numbers = [c.split("\n")[0] for c in captions]
    failed = captions[0].count("didn't work")
    assert len(numbers) + failed == 3 and numbers == sorted(numbers)
    await operator.until(
        lambda: (
            sorted(operator.job_states())
            == sorted(["delivered"] * (3 - failed) + ["interrupted"] * failed)
        )
    )
    assert len(tg.calls_of("sendMediaGroup")) == (1 if len(numbers) > 1 else 0)
