"""Invariant tests for the DashScope slot scheduler.

No timers: every job holds its slot until the test sets its gate, and ``settle()`` only
yields to the event loop so woken tasks can run.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter

import pytest

from services.tryon.scheduler import QueueFull, SchedulerLimits, TryOnScheduler


class Boom(Exception):
    pass


async def settle() -> None:
    """Let woken tasks run: a finished job wakes its successor within a couple of turns."""
    for _ in range(10):
        await asyncio.sleep(0)


class Harness:
    """Runs jobs through the scheduler, each parked inside its slot until released."""

    def __init__(self, limits: SchedulerLimits) -> None:
        self.positions: list[dict[str, int]] = []
        self.sched = TryOnScheduler(limits, on_positions=self.positions.append)
        self.started: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.fail: set[str] = set()
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def submit(self, job_id: str, user_id: int) -> asyncio.Task[None]:
        self.sched.reserve(job_id, user_id)
        return self.enter(job_id)

    def enter(self, job_id: str) -> asyncio.Task[None]:
        self.gates[job_id] = asyncio.Event()
        task = asyncio.create_task(self._run(job_id))
        self.tasks[job_id] = task
        return task

    async def _run(self, job_id: str) -> None:
        async with self.sched.slot(job_id):
            self.started.append(job_id)
            await self.gates[job_id].wait()
            if job_id in self.fail:
                raise Boom(job_id)

    async def finish(self, job_id: str, *, fail: bool = False) -> None:
        if fail:
            self.fail.add(job_id)
        self.gates[job_id].set()
        await settle()

    def states(self) -> dict[str, str]:
        return {job_id: state for job_id, _, state in self.sched.snapshot()}


# -- fairness and per-user limits ----------------------------------------------------------


async def test_first_come_first_served_across_users() -> None:
    h = Harness(SchedulerLimits(max_concurrent=1))
    for user, job in enumerate(["a", "b", "c", "d"]):
        h.submit(job, user)
    await settle()
    assert h.started == ["a"]
    for job in ["a", "b", "c"]:
        await h.finish(job)
    assert h.started == ["a", "b", "c", "d"]
    await h.finish("d")
    assert h.sched.snapshot() == []


async def test_users_second_job_waits_without_blocking_later_users() -> None:
    h = Harness(SchedulerLimits(max_concurrent=2, per_user_running=1, per_user_waiting=1))
    h.submit("a1", 1)
    h.submit("a2", 1)
    h.submit("b1", 2)
    h.submit("c1", 3)
    await settle()
    assert h.started == ["a1", "b1"]  # a2 is skipped, not a barrier
    assert h.sched.snapshot() == [
        ("a1", 1, "running"),
        ("b1", 2, "running"),
        ("a2", 1, "waiting"),
        ("c1", 3, "waiting"),
    ]
    assert (h.sched.position("a2"), h.sched.position("c1")) == (1, 2)

    await h.finish("b1")
    assert h.started[-1] == "c1"  # a later user goes ahead while a1 still runs
    assert h.sched.position("a2") == 1

    await h.finish("a1")
    assert h.started[-1] == "a2"
    assert h.sched.waiting == 0


async def test_queue_full_at_user_limit_and_admitted_after_finish() -> None:
    h = Harness(SchedulerLimits(max_concurrent=5, per_user_running=1, per_user_waiting=1))
    h.submit("a1", 1)
    h.sched.reserve("a2", 1)  # reserved, not yet awaiting a slot
    await settle()
    with pytest.raises(QueueFull) as info:
        h.sched.reserve("a3", 1)
    assert (info.value.running, info.value.waiting) == (1, 1)
    h.sched.reserve("b1", 2)  # other users are unaffected

    h.enter("a2")
    await settle()
    assert h.states()["a2"] == "waiting"  # per_user_running=1 holds it back
    await h.finish("a1")
    assert h.states()["a2"] == "running"
    h.submit("a3", 1)  # allowance freed by a1 finishing
    await settle()
    with pytest.raises(QueueFull) as info:
        h.sched.reserve("a4", 1)
    assert (info.value.running, info.value.waiting) == (1, 1)


async def test_queue_full_counts_reserved_jobs_before_they_run() -> None:
    sched = TryOnScheduler(SchedulerLimits(per_user_running=1, per_user_waiting=1))
    sched.reserve("a1", 1)
    sched.reserve("a2", 1)
    with pytest.raises(QueueFull) as info:
        sched.reserve("a3", 1)
    assert (info.value.running, info.value.waiting) == (0, 2)
    sched.release("a1")
    sched.reserve("a3", 1)


async def test_reserve_is_idempotent() -> None:
    h = Harness(SchedulerLimits(per_user_running=1, per_user_waiting=0))
    h.sched.reserve("a", 1)
    h.sched.reserve("a", 1)  # at the user's limit, but the same job: no error
    assert h.sched.waiting == 1
    assert h.positions == [{"a": 1}]


async def test_slot_requires_reserve() -> None:
    sched = TryOnScheduler()
    with pytest.raises(KeyError):
        sched.slot("nope")


async def test_invalid_limits_rejected() -> None:
    with pytest.raises(ValueError):
        SchedulerLimits(max_concurrent=0)


# -- positions, cancellation, exceptions ---------------------------------------------------


async def test_positions_and_listener_follow_the_line() -> None:
    h = Harness(SchedulerLimits(max_concurrent=1))
    for user, job in enumerate(["a", "b", "c", "d"]):
        h.submit(job, user)
    await settle()
    assert [h.sched.position(j) for j in "abcd"] == [None, 1, 2, 3]
    assert h.positions == [
        {"a": 1},
        {"a": 1, "b": 2},
        {"a": 1, "b": 2, "c": 3},
        {"a": 1, "b": 2, "c": 3, "d": 4},
        {"b": 1, "c": 2, "d": 3},  # a started
    ]
    h.positions.clear()
    await h.finish("a")
    assert h.positions == [{"c": 1, "d": 2}]
    assert [h.sched.position(j) for j in "abcd"] == [None, None, 1, 2]
    h.positions.clear()
    await h.finish("b")
    await h.finish("c")
    assert h.positions == [{"d": 1}, {}]
    await h.finish("d")
    assert h.positions == [{"d": 1}, {}]  # nothing moved, no extra call


async def test_blocked_user_keeps_place_and_counts_for_those_behind() -> None:
    h = Harness(SchedulerLimits(max_concurrent=3, per_user_running=1, per_user_waiting=2))
    h.submit("a1", 1)
    h.submit("a2", 1)
    h.submit("b1", 2)
    h.submit("a3", 1)
    h.submit("c1", 3)
    h.submit("d1", 4)
    await settle()
    assert h.started == ["a1", "b1", "c1"]
    assert {j: h.sched.position(j) for j in ["a2", "a3", "d1"]} == {"a2": 1, "a3": 2, "d1": 3}
    await h.finish("c1")
    assert h.started[-1] == "d1"
    assert h.positions[-1] == {"a2": 1, "a3": 2}


async def test_cancel_while_waiting_leaves_line_and_shifts_positions() -> None:
    h = Harness(SchedulerLimits(max_concurrent=1))
    for user, job in enumerate(["a", "b", "c", "d"]):
        h.submit(job, user)
    await settle()
    h.positions.clear()

    h.tasks["c"].cancel()
    await settle()
    assert h.tasks["c"].cancelled()
    assert h.positions == [{"b": 1, "d": 2}]
    assert h.sched.position("c") is None
    assert "c" not in h.states()
    h.sched.reserve("c", 2)  # its user may queue again

    await h.finish("a")
    await h.finish("b")
    assert h.started == ["a", "b", "d"]


async def test_cancel_right_after_grant_passes_slot_on() -> None:
    h = Harness(SchedulerLimits(max_concurrent=1))
    h.sched.reserve("a", 0)
    h.submit("b", 1)
    h.submit("c", 2)
    async with h.sched.slot("a"):
        await settle()
    # a's exit granted b, but b is cancelled before it gets to run.
    h.tasks["b"].cancel()
    await settle()
    assert h.tasks["b"].cancelled()
    assert h.started == ["c"]
    assert h.sched.snapshot() == [("c", 2, "running")]


async def test_exception_inside_slot_releases_it() -> None:
    h = Harness(SchedulerLimits(max_concurrent=1))
    h.submit("a", 1)
    h.submit("b", 2)
    await settle()
    await h.finish("a", fail=True)
    with pytest.raises(Boom):
        await h.tasks["a"]
    assert h.started == ["a", "b"]
    assert h.sched.snapshot() == [("b", 2, "running")]


async def test_cancel_while_running_releases_slot() -> None:
    h = Harness(SchedulerLimits(max_concurrent=1))
    h.submit("a", 1)
    h.submit("b", 2)
    await settle()
    h.tasks["a"].cancel()
    await settle()
    assert h.tasks["a"].cancelled()
    assert h.sched.snapshot() == [("b", 2, "running")]


async def test_release_drops_waiting_jobs_only() -> None:
    h = Harness(SchedulerLimits(max_concurrent=1))
    h.submit("a", 1)
    h.sched.reserve("b", 2)  # never enters slot()
    h.submit("c", 3)
    await settle()
    assert h.sched.position("c") == 2
    h.sched.release("b")
    assert h.sched.position("c") == 1
    h.sched.release("unknown")
    h.sched.release("a")  # running: keeps its slot until the block exits
    assert h.states() == {"a": "running", "c": "waiting"}

    h.sched.release("c")  # its task is awaiting slot(): the await is cancelled
    await settle()
    assert h.tasks["c"].cancelled()
    assert h.states() == {"a": "running"}


async def test_reserved_job_not_in_slot_does_not_hold_capacity() -> None:
    h = Harness(SchedulerLimits(max_concurrent=1))
    h.sched.reserve("a", 1)  # keeps its place but is not awaiting yet
    h.submit("b", 2)
    await settle()
    assert h.states() == {"b": "running", "a": "waiting"}
    assert h.sched.position("a") == 1
    h.enter("a")
    await h.finish("b")
    assert h.started == ["b", "a"]


async def test_broken_listener_does_not_break_scheduling(caplog: pytest.LogCaptureFixture) -> None:
    def listener(_: dict[str, int]) -> None:
        raise RuntimeError("telegram down")

    sched = TryOnScheduler(SchedulerLimits(max_concurrent=1), on_positions=listener)
    with caplog.at_level(logging.ERROR, logger="services.tryon.scheduler"):
        sched.reserve("a", 1)
        async with sched.slot("a"):
            assert sched.running == 1
    assert sched.snapshot() == []
    assert "position listener failed" in caplog.text


# -- restart recovery -----------------------------------------------------------------------


async def test_adopt_running_beyond_limit_blocks_new_jobs_until_below() -> None:
    h = Harness(SchedulerLimits(max_concurrent=2))
    for n in range(4):
        h.sched.adopt_running(f"old{n}", n)
        h.enter(f"old{n}")
    h.submit("new", 9)
    await settle()
    assert h.sched.running == 4  # nothing dropped
    assert h.started == ["old0", "old1", "old2", "old3"]  # slot() returned at once
    assert h.states()["new"] == "waiting"

    await h.finish("old0")
    await h.finish("old1")
    assert (h.sched.running, h.states()["new"]) == (2, "waiting")  # 2 is not below 2
    await h.finish("old2")
    assert h.states()["new"] == "running"
    assert h.sched.running == 2


async def test_adopted_job_counts_toward_its_user() -> None:
    h = Harness(SchedulerLimits(max_concurrent=5, per_user_running=1, per_user_waiting=1))
    h.sched.adopt_running("old", 1)
    h.submit("new", 1)
    await settle()
    assert h.states() == {"old": "running", "new": "waiting"}
    with pytest.raises(QueueFull):
        h.sched.reserve("more", 1)
    h.enter("old")
    await h.finish("old")
    assert h.states() == {"new": "running"}


# -- randomized interleavings ----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
async def test_random_interleavings_keep_invariants(seed: int) -> None:
    """~200 jobs from 30 users, finished, failed and cancelled in random order."""
    rng = random.Random(seed)
    limits = SchedulerLimits(max_concurrent=5, per_user_running=1, per_user_waiting=2)
    problems: list[str] = []
    order: dict[str, int] = {}  # job_id -> reserve sequence (latest reservation)
    inside: Counter[int] = Counter()
    ran: Counter[str] = Counter()

    def on_positions(mapping: dict[str, int]) -> None:
        line = [j for j, _, state in sched.snapshot() if state == "waiting"]
        if mapping != {j: i for i, j in enumerate(line, start=1)}:
            problems.append(f"listener got {mapping} for line {line}")

    sched = TryOnScheduler(limits, on_positions=on_positions)
    gates: dict[str, asyncio.Event] = {}
    fail: set[str] = set()
    tasks: dict[str, asyncio.Task[None]] = {}
    users: dict[str, int] = {}

    async def run(job_id: str, user_id: int) -> None:
        async with sched.slot(job_id):
            inside[user_id] += 1
            try:
                ran[job_id] += 1
                if inside.total() > limits.max_concurrent:
                    problems.append(f"{inside.total()} running")
                if inside[user_id] > limits.per_user_running:
                    problems.append(f"user {user_id} runs {inside[user_id]}")
                # Nobody reserved earlier and eligible may still be waiting.
                snap = sched.snapshot()
                busy = Counter(u for _, u, s in snap if s == "running")
                for j, u, s in snap:
                    if s == "waiting" and order[j] < order[job_id] and busy[u] == 0:
                        problems.append(f"{job_id} overtook eligible {j}")
                await gates[job_id].wait()
                if job_id in fail:
                    raise Boom(job_id)
            finally:
                inside[user_id] -= 1

    pending = [f"j{n}" for n in range(200)]
    for job_id in pending:
        users[job_id] = rng.randrange(30)
    seq = 0

    while pending or tasks:
        live = {j: t for j, t in tasks.items() if not t.done()}
        states = {j: s for j, _, s in sched.snapshot()}
        running = [j for j in live if states.get(j) == "running"]
        waiting = [j for j in live if states.get(j) == "waiting"]
        actions = (["submit"] * 3 if pending else []) + (["finish"] * 3 if running else [])
        actions += ["cancel"] if waiting else []
        action = rng.choice(actions)

        if action == "submit":
            job_id = pending.pop(rng.randrange(min(len(pending), 5)))
            try:
                sched.reserve(job_id, users[job_id])
            except QueueFull as exc:
                if exc.running + exc.waiting < limits.per_user_running + limits.per_user_waiting:
                    problems.append(f"spurious QueueFull {exc}")
                pending.append(job_id)  # the user retries later
            else:
                seq += 1
                order[job_id] = seq
                gates[job_id] = asyncio.Event()
                tasks[job_id] = asyncio.create_task(run(job_id, users[job_id]))
        elif action == "finish":
            job_id = rng.choice(running)
            roll = rng.random()
            if roll < 0.1:
                tasks[job_id].cancel()
            elif roll < 0.2:
                fail.add(job_id)
            gates[job_id].set()
        else:
            job_id = rng.choice(waiting)
            tasks[job_id].cancel()
            pending.append(job_id)  # cancelled before running: the user asks again
        await settle()

        for job_id in [j for j, t in tasks.items() if t.done()]:
            task = tasks.pop(job_id)
            if not task.cancelled() and not isinstance(task.exception(), Boom | type(None)):
                problems.append(f"{job_id} crashed: {task.exception()!r}")
            if task.cancelled() and ran[job_id] == 0 and job_id not in pending:
                problems.append(f"{job_id} lost")

        snap = sched.snapshot()
        busy = Counter(u for _, u, s in snap if s == "running")
        assert sched.running == inside.total() <= limits.max_concurrent
        if sched.running < limits.max_concurrent:  # work conserving
            idle = [j for j, u, s in snap if s == "waiting" and busy[u] == 0]
            assert not idle, f"slot free while {idle} could run"
        line = [j for j, _, s in snap if s == "waiting"]
        assert [sched.position(j) for j in line] == list(range(1, len(line) + 1))
        assert not problems, problems

    assert sched.snapshot() == []
    assert sorted(ran) == sorted(users) and set(ran.values()) == {1}
