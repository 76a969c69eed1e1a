"""The line, fairness and cost control, end to end: what users and the operator notice when
several people use the bot at once (real Application against both test doubles)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.settings import Settings
from handlers.texts import MESSAGES, Texts
from services.model import InputImage, Job, JobState, new_job_id
from services.storage.database import Database
from services.storage.jobs import JobStore
from services.tryon.quota import QuotaPolicy, seconds_to_next_day
from tests.actors import Actor
from tests.doubles.dashscope import FakeDashScope
from tests.doubles.telegram import FakeTelegram, SentMessage
from tests.harness import jpeg, make_settings, running_bot, services_of

TEXTS = Texts.load()
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN"})


def text(key: str, **values: Any) -> str:
    return TEXTS.get("en", key, **values)


def text_pattern(key: str, value: str = r"(\d+)") -> re.Pattern[str]:
    """The English catalog text as a regex, each {placeholder} a `value` (a number)."""
    escaped = re.escape(MESSAGES[key].text)
    return re.compile(re.sub(r"\\\{\w+\\\}", lambda _: value, escaped))


WAIT = r"(?:(\d+) h )?(\d+) min"  # a refusal's wait: "3 h 20 min", "3 h 0 min", "5 min"


PREPARING = text("stage_preparing")
WAITING = text_pattern("stage_waiting")
QUEUED_REMOTE = text("stage_queued_remote")


def settings_for(tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path, **overrides: Any) -> Settings:
    return make_settings(tg.base_url, ds.base_url, tmp_path / "data", **overrides)


def is_status(message: SentMessage) -> bool:
    """A try-on's status message (by its text as sent: edits change `body`)."""
    return (message.raw_text or "").startswith(PREPARING)


async def start(user: Actor, seed: int) -> tuple[int, SentMessage]:
    """One whole try-on request (person + top); returns where its outcome starts and the
    status message the bot posted for it."""
    since = await user.try_on(person=jpeg(seed=1000 + seed), top=jpeg(seed=2000 + seed))
    status = await user.next_from_bot(since, is_status)
    return since, status


def created_tasks(ds: FakeDashScope) -> list[str]:
    """Task ids of the submits that created a task, in submit order."""
    return [record["task_id"] for record in ds.submits if record.get("task_id")]


async def task_created(ds: FakeDashScope, count: int, timeout: float = 10.0) -> str:
    """Waits until `count` tasks exist at the double; returns the id of the last one."""
    await ds.wait_for(lambda: len(created_tasks(ds)) >= count, timeout)
    return created_tasks(ds)[count - 1]


def positions(status: SentMessage) -> list[int]:
    """The '#N in line' places a status message showed, in order, repeats collapsed."""
    places: list[int] = []
    for edit in status.edits:
        found = WAITING.search(edit)
        if found and (not places or places[-1] != int(found.group(1))):
            places.append(int(found.group(1)))
    return places


async def shows_place(tg: FakeTelegram, status: SentMessage, place: int) -> None:
    await tg.wait_for(lambda: positions(status)[-1:] == [place], timeout=5.0)


def results_in(tg: FakeTelegram, chat_id: int | None = None) -> list[SentMessage]:
    return [
        m
        for m in tg.sent
        if m.kind in ("photo", "document")
        and m.buttons
        and (chat_id is None or m.chat_id == chat_id)
    ]


class InFlight:
    """Peak number of tasks submitted to the double and not finished yet, re-checked on
    every request and every task change the double sees."""

    def __init__(self, ds: FakeDashScope) -> None:
        self.ds = ds
        self.peak = 0

    def _observe(self) -> bool:
        unfinished = sum(1 for task in self.ds.tasks.values() if task.status not in TERMINAL)
        self.peak = max(self.peak, unfinished)
        return False  # never done: watches until cancelled

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[InFlight]:
        watcher = asyncio.create_task(self.ds.wait_for(self._observe, timeout=600))
        try:
            yield self
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


# ---- the line ---------------------------------------------------------------------------


async def test_two_slots_five_users_wait_in_line_first_come_first_served(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path
) -> None:
    ds.hold_tasks()
    users = [Actor(tg, 3100 + i, name=f"User{i}") for i in range(5)]
    settings = settings_for(tg, ds, tmp_path, max_concurrent=2)
    async with running_bot(settings), InFlight(ds).watching() as flight:
        since: list[int] = []
        statuses: list[SentMessage] = []
        for i, user in enumerate(users):
            start_at, status = await start(user, i)
            since.append(start_at)
            statuses.append(status)
            if i < 2:
                await task_created(ds, i + 1)
            else:
                await shows_place(tg, status, i - 1)  # 3rd user #1, 4th #2, 5th #3
        assert len(ds.submits) == 2  # the other three wait in the bot, not at DashScope

        for done in range(5):
            ds.complete(created_tasks(ds)[done])
            await users[done].result(since[done])
            if done + 2 < 5:
                await task_created(ds, done + 3)  # the freed slot goes to the next in line
            for j in range(done + 3, 5):
                await shows_place(tg, statuses[j], j - done - 2)  # everyone moves up
            assert len(ds.submits) == min(5, done + 3)
        await tg.wait_for(lambda: all(status.deleted for status in statuses))  # make way

    assert ds.max_running_seen <= 2
    assert flight.peak == 2
    assert [positions(s) for s in statuses] == [[], [], [1], [2, 1], [3, 2, 1]]
    assert [m.chat_id for m in results_in(tg)] == [u.chat_id for u in users]


async def test_one_running_and_one_waiting_per_user(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path
) -> None:
    ds.hold_tasks()
    ann, bob = Actor(tg, 3201, name="Ann"), Actor(tg, 3202, name="Bob")
    async with running_bot(settings_for(tg, ds, tmp_path)):  # 5 slots: room for everyone
        await start(ann, 1)
        first_task = await task_created(ds, 1)
        _, second_status = await start(ann, 2)
        await shows_place(tg, second_status, 1)  # waits although slots are free: Ann's turn
        refusal = await ann.command("tryon")  # said before any photo is asked for
        assert refusal.body == text("too_many_running")
        assert len(ds.submits) == 1

        bob_since, _ = await start(bob, 3)
        bob_task = await task_created(ds, 2)  # Bob is not held up by Ann's waiting try-on
        ds.complete(bob_task)
        await bob.result(bob_since)
        assert len(ds.submits) == 2

        ds.complete(first_task)
        await tg.wait_for(lambda: len(results_in(tg, ann.chat_id)) == 1)
        ds.complete(await task_created(ds, 3))  # Ann's second try-on starts only now
        await tg.wait_for(lambda: len(results_in(tg, ann.chat_id)) == 2)
    assert len(ds.submits) == 3
    assert len(results_in(tg, ann.chat_id)) == 2 and len(results_in(tg, bob.chat_id)) == 1


# ---- DashScope's limits -----------------------------------------------------------------


class JitteryNetwork:
    """A hop between the bot and the DashScope double that holds back every third task
    query by `delay` seconds, as a real network's latency varies from one request to the
    next; everything else passes straight through."""

    def __init__(self, target: str, delay: float) -> None:
        self.target = target
        self.delay = delay
        self.queries = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.origin = ""

    async def __aenter__(self) -> JitteryNetwork:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._session = aiohttp.ClientSession()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.origin = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        if request.method == "GET" and request.path.startswith("/api/v1/tasks/"):
            self.queries += 1
            if self.queries % 3 == 0:
                await asyncio.sleep(self.delay)
        skip = {"host", "content-length", "transfer-encoding"}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
        async with self._session.request(
            request.method,
            self.target + request.path_qs,
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as reply:
            body = await reply.read()
            drop = {"content-length", "transfer-encoding", "content-encoding", "connection"}
            kept = {k: v for k, v in reply.headers.items() if k.lower() not in drop}
            return web.Response(status=reply.status, body=body, headers=kept)


async def poll_five_tasks(
    tg: FakeTelegram,
    ds: FakeDashScope,
    tmp_path: Path,
    query_qps: int,
    polls: int,
    api_base: str | None = None,
) -> tuple[list[float], int]:
    """Five try-ons held in flight while the bot polls them with a query limit of
    `query_qps`; returns the arrival times of `polls` queries made once all five were
    running (the test's own photo making no longer competes for the event loop) and how
    many of those the double throttled. All five results must still arrive."""
    ds.hold_tasks()
    users = [Actor(tg, 3300 + query_qps * 10 + i, name=f"User{i}") for i in range(5)]
    settings = settings_for(tg, ds, tmp_path, query_qps=query_qps)
    if api_base is not None:
        settings = replace(settings, dashscope_http_base_url=api_base)
    async with running_bot(settings):
        since = [(await start(user, i))[0] for i, user in enumerate(users)]
        await task_created(ds, 5)
        first, throttled = len(ds.query_times), ds.throttled["query"]
        await ds.wait_for(lambda: len(ds.query_times) >= first + polls, timeout=10)
        steady = ds.query_times[first : first + polls]
        throttled = ds.throttled["query"] - throttled
        for task_id in created_tasks(ds):
            ds.complete(task_id)
        for user, start_at in zip(users, since, strict=True):
            await user.result(start_at, timeout=20)
    return steady, throttled


def most_in_window(times: list[float], window: float) -> int:
    ordered = sorted(times)
    return max(
        sum(1 for later in ordered[i:] if later - start < window) for i, start in enumerate(ordered)
    )


async def test_polling_stays_within_the_query_budget(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path
) -> None:
    # Five tasks in flight want 100 polls a second; the bot spreads 3 a second among them.
    steady, throttled = await poll_five_tasks(tg, ds, tmp_path, query_qps=3, polls=7)
    assert most_in_window(steady, 1.0) <= 3  # counted where the queries arrive
    assert ds.max_queries_in_window(0.5) <= 3  # throughout, from the first poll to the last
    assert throttled == 0 and ds.throttled["query"] == 0


async def test_query_limit_at_the_accounts_qps_holds_despite_network_jitter(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path
) -> None:
    async with JitteryNetwork(ds.origin, delay=0.1) as network:
        steady, throttled = await poll_five_tasks(
            tg, ds, tmp_path, query_qps=20, polls=60, api_base=network.origin + "/api/v1"
        )
    assert most_in_window(steady, 1.0) <= 20  # what the account allows, as DashScope counts
    assert throttled == 0


async def test_a_task_pending_at_dashscope_says_so(tg: FakeTelegram, tmp_path: Path) -> None:
    async with FakeDashScope(max_concurrent=1, pending_seconds=0.02, running_seconds=0.1) as busy:
        busy.hold_tasks()
        ann, bob = Actor(tg, 3451, name="Ann"), Actor(tg, 3452, name="Bob")
        async with running_bot(settings_for(tg, busy, tmp_path)):
            ann_since, _ = await start(ann, 1)
            await task_created(busy, 1)
            bob_since, bob_status = await start(bob, 2)
            await task_created(busy, 2)
            await busy.wait_for(lambda: busy.queued_for_slot == 1)
            try:
                await tg.wait_for(
                    lambda: any(QUEUED_REMOTE in edit for edit in bob_status.edits), timeout=2
                )
            finally:
                for task_id in created_tasks(busy):
                    busy.complete(task_id)
                await ann.result(ann_since)
                await bob.result(bob_since)


# ---- uploads ------------------------------------------------------------------------------


async def test_one_garment_for_three_members_is_uploaded_once(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path
) -> None:
    group = tg.group(-100_3500, "Fitting room")
    poster = tg.user(3500, "Poster")
    garment = tg.send_photo(group, poster, jpeg(seed=3500))  # a photo someone posted
    members = [Actor(tg, 3501 + i, chat=group, name=f"Member{i}") for i in range(3)]
    async with running_bot(settings_for(tg, ds, tmp_path)):
        for i, member in enumerate(members):
            private = Actor(tg, member.user["id"], name=member.user["first_name"])
            await private.command("me")
            saved = await private.photo(jpeg(seed=3600 + i))
            assert saved.body == text("me_saved")
        assert ds.upload_count == 3  # the three person photos

        prompts = [await m.command("tryon", reply_to=garment) for m in members]
        assert all(p.body == text("ask_category") for p in prompts)
        ds.delay_next("upload", 1.0)  # the first garment upload is slow: the others join it
        for member, prompt in zip(members, prompts, strict=True):
            tg.press_button(group, member.user, prompt, prompt.button_data("Dress"))
        await tg.wait_for(lambda: len(results_in(tg, group["id"])) == 3, timeout=15)

    assert ds.upload_count == 4  # three people, one garment
    garments = {s["body"]["input"]["top_garment_url"] for s in ds.submits}
    assert len(garments) == 1 and len(ds.submits) == 3
    persons = {s["body"]["input"]["person_image_url"] for s in ds.submits}
    assert len(persons) == 3
    requests = {m.last_sent["message_id"] for m in members if m.last_sent}
    assert {r.reply_to_message_id for r in results_in(tg, group["id"])} == requests


# ---- cost control -------------------------------------------------------------------------


def refusal_numbers(message: SentMessage, key: str) -> tuple[int, int]:
    found = text_pattern(key, WAIT).fullmatch(message.body)
    assert found, (key, message.body)
    return int(found.group(1) or 0), int(found.group(2))


def close_to_reset(hours_minutes: tuple[int, int], before: float, after: float) -> bool:
    """Whether 'h h m min' is what the bot could have computed between the two times
    (it rounds up to the next whole minute)."""
    told = hours_minutes[0] * 60 + hours_minutes[1]
    low, high = (-(-int(seconds_to_next_day(t)) // 60) for t in (after, before))
    return low <= told <= high


async def test_daily_limit_refuses_at_tryon_and_failures_do_not_count(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path
) -> None:
    ann = Actor(tg, 3601, name="Ann")
    async with running_bot(settings_for(tg, ds, tmp_path, user_daily_limit=2)):
        ds.script_next_task("FAILED", "InvalidPerson")
        since = await ann.try_on(top=jpeg(seed=1))
        await ann.next_from_bot(since, lambda m: m.body == text("fail_invalid_person"))
        for seed in (2, 3):
            since = await ann.try_on(top=jpeg(seed=seed))
            await ann.result(since)
        uploads, submits = ds.upload_count, len(ds.submits)
        before = time.time()
        refusal = await ann.command("tryon")
        after = time.time()
        assert close_to_reset(refusal_numbers(refusal, "refused_daily_limit"), before, after)
        again = await ann.photo()  # the flow never started: the photo is not taken
        assert again.body != text("ask_top")
    assert (ds.upload_count, len(ds.submits)) == (uploads, submits) == (uploads, 3)
    assert len(results_in(tg, ann.chat_id)) == 2


async def test_daily_budget_stops_the_whole_bot_and_tells_the_operator(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    users = [Actor(tg, 3700 + i, name=f"User{i}") for i in range(4)]
    caplog.set_level(logging.INFO, logger="services.tryon.quota")
    async with running_bot(settings_for(tg, ds, tmp_path, daily_budget=3)):
        for i, user in enumerate(users[:3]):
            since = await user.try_on(top=jpeg(seed=i))
            await user.result(since)
        before = time.time()
        refusal = await users[3].command("tryon")
        after = time.time()
    assert close_to_reset(refusal_numbers(refusal, "refused_budget"), before, after)
    assert len(ds.submits) == 3
    warnings = [
        r
        for r in caplog.records
        if r.name == "services.tryon.quota" and r.levelno == logging.WARNING
    ]
    assert warnings, caplog.text
    assert "daily budget (3) is spent" in warnings[0].getMessage()
    assert str(users[3].user["id"]) in warnings[0].getMessage()


async def test_budget_holds_when_two_finish_at_once(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path
) -> None:
    ann, bob = Actor(tg, 3751, name="Ann"), Actor(tg, 3752, name="Bob")
    async with running_bot(settings_for(tg, ds, tmp_path, daily_budget=1)):
        for i, user in enumerate((ann, bob)):
            await user.command("tryon")
            await user.photo(jpeg(seed=100 + i))
            prompt = await user.photo(jpeg(seed=200 + i))
            assert prompt.body == text("ask_bottom")
        # Telegram holds the bot back for a second before it may post Ann's status message:
        # her try-on must count against the budget all the same.
        tg.flood("sendMessage", chat_id=ann.chat_id, retry_after=1)
        calls, ann_since = len(tg.calls), len(tg.sent)
        tg.send_photo(ann.chat, ann.user, jpeg(seed=300))  # Ann's last photo...
        await tg.wait_for_call("sendMessage", lambda c: c.status == 429, since=calls)
        bob_since = len(tg.sent)
        tg.send_photo(bob.chat, bob.user, jpeg(seed=301))  # ...and Bob's, a moment later
        bob_reply = await bob.next_from_bot(bob_since)
        await ann.result(ann_since)
    assert text_pattern("refused_budget", WAIT).fullmatch(bob_reply.body), bob_reply.body
    assert len(ds.submits) == 1


async def test_allowlist_admits_listed_users_and_groups_only(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path
) -> None:
    friend = Actor(tg, 3801, name="Friend")
    stranger = Actor(tg, 3802, name="Stranger")
    team = tg.group(-100_3800, "Team")
    member = Actor(tg, 3803, chat=team, name="Member")  # not listed; the group is
    other_group = tg.group(-100_3899, "Elsewhere")
    outsider = Actor(tg, 3804, chat=other_group, name="Outsider")
    allowed = frozenset({friend.chat_id, team["id"]})
    async with running_bot(settings_for(tg, ds, tmp_path, allowed_chats=allowed)):
        refusal = await stranger.command("tryon")
        assert refusal.body == text("not_allowed")
        refusal = await stranger.photo(jpeg(seed=1))
        assert refusal.body == text("not_allowed")
        refusal = await outsider.command("tryon")
        assert refusal.body == text("not_allowed")
        assert ds.upload_count == 0 and ds.submits == [] and tg.calls_of("getFile") == []

        since = await friend.try_on(top=jpeg(seed=2))
        await friend.result(since)
        since = await member.try_on(top=jpeg(seed=3))
        await member.result(since)
    assert len(ds.submits) == 2
    assert len(results_in(tg, stranger.chat_id)) == 0
    assert len(results_in(tg, other_group["id"])) == 0


# ---- the daily reset ----------------------------------------------------------------------


async def test_refused_today_welcome_again_after_midnight_utc(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path
) -> None:
    ann = Actor(tg, 3901, name="Ann")
    async with running_bot(settings_for(tg, ds, tmp_path, user_daily_limit=1)) as app:
        since = await ann.try_on(top=jpeg(seed=1))
        await ann.result(since)
        refusal = await ann.command("tryon")
        refusal_numbers(refusal, "refused_daily_limit")
        assert len(ds.submits) == 1
        # The running bot's quota reads the clock it was given; move it past midnight UTC.
        svc = services_of(app)
        midnight = time.time() + seconds_to_next_day(time.time())
        svc.quota = QuotaPolicy(
            svc.store,
            user_daily_limit=1,
            daily_budget=0,
            allowed_chats=frozenset(),
            clock=lambda: midnight + 1,
        )
        since = await ann.try_on(top=jpeg(seed=2))  # a new day: welcome again
        await ann.result(since)
    assert len(ds.submits) == 2


def at_utc(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


async def test_counts_reset_exactly_at_the_utc_day_boundary(tmp_path: Path) -> None:
    db = Database(tmp_path / "quota.sqlite3")
    store = JobStore(db)
    now = [at_utc(2025, 3, 9, 23, 59, 59)]

    def clock() -> float:
        return now[0]

    def job(user_id: int, created_at: float, state: JobState = JobState.DELIVERED) -> Job:
        return Job(
            id=new_job_id(),
            chat_id=user_id,
            user_id=user_id,
            lang="en",
            model="aitryon-plus",
            person=InputImage("p", "p-uniq"),
            top=InputImage("t", "t-uniq"),
            state=state,
            created_at=created_at,
        )

    policy = QuotaPolicy(
        store, user_daily_limit=2, daily_budget=3, allowed_chats=frozenset(), clock=clock
    )
    try:
        late = at_utc(2025, 3, 9, 23, 0)
        await store.create(job(1, late))
        await store.create(job(1, late, JobState.FAILED))  # not billed
        await store.create(job(1, late + 60, JobState.RUNNING))
        await store.create(job(2, late + 120))
        refusal = await policy.check(1)
        assert refusal is not None and refusal.reason == "daily_limit"
        assert refusal.resets_in == pytest.approx(1.0)
        refusal = await policy.check(3)
        assert refusal is not None and refusal.reason == "budget"

        now[0] = at_utc(2025, 3, 10, 0, 0, 0)  # midnight UTC: a new day for everyone
        assert await policy.check(1) is None
        assert await policy.check(3) is None
        await store.create(job(1, now[0]))
        await store.create(job(1, now[0] + 1))
        refusal = await policy.check(1)
        assert refusal is not None and refusal.resets_in == pytest.approx(86400.0)
        assert await policy.check(2) is None
    finally:
        await db.close()
