"""Fair, bounded admission of try-on jobs to DashScope.

DashScope lets the account keep ``max_concurrent`` tasks in flight (from submit until the
task finishes). The per-second submit/query limits are a separate concern handled by
:class:`services.ratelimit.SlidingWindowLimiter` around the HTTP calls; this module only
decides *which* job may hold one of the in-flight slots, and in what order.

Model
-----
* ``reserve()`` puts a job at the end of one line (FIFO by reserve order) and enforces the
  per-user allowance, so a handler can refuse a request *before* doing any work.
* ``async with slot(job_id)`` waits for a slot and holds it until the block exits.
* A job starts when a slot is free and its user runs fewer than ``per_user_running``
  jobs; the earliest-reserved such job goes first. A user's extra job is skipped, not a
  barrier, so it never holds back other users' jobs behind it, yet it keeps its place.
* Only jobs whose task is actually awaiting ``slot()`` are handed a slot. A reserved job
  that has not entered ``slot()`` yet keeps its place in line but never sits on a slot it
  is not using, so a caller that reserves and then dies cannot leak capacity.
* Batches: the jobs of one batch (one user request of several try-ons, e.g. three tops
  on one person) count as one request towards the per-user allowance, and run one at a
  time like any user's jobs; when nobody else is waiting, a batch may use more slots.
* Positions: a waiting job's place is the number of waiting jobs reserved before it,
  plus one. Jobs skipped because their user is busy still count for those behind them.

Everything runs on one event loop. Each waiter parks on its own future; the single
``_dispatch()`` resolves exactly the futures of the jobs it starts, so there is no
polling and no thundering herd.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal, TypeVar

__all__ = [
    "PositionListener",
    "QueueFull",
    "SchedulerLimits",
    "TryOnScheduler",
]

log = logging.getLogger(__name__)
K = TypeVar("K")

PositionListener = Callable[[dict[str, int]], None]
"""Receives ``job_id -> 1-based place`` for every waiting job whenever places change."""


class QueueFull(Exception):
    """The user already holds all their running and waiting places."""

    def __init__(self, running: int, waiting: int) -> None:
        super().__init__(f"user already has {running} running and {waiting} waiting job(s)")
        self.running = running
        self.waiting = waiting


@dataclass(frozen=True)
class SchedulerLimits:
    max_concurrent: int = 5
    per_user_running: int = 1
    per_user_waiting: int = 1

    def __post_init__(self) -> None:
        if self.max_concurrent < 1 or self.per_user_running < 1 or self.per_user_waiting < 0:
            raise ValueError(f"invalid scheduler limits: {self}")


@dataclass(eq=False)
class _Job:
    job_id: str
    user_id: int
    batch: str | None = None
    state: Literal["waiting", "running"] = "waiting"
    entered: bool = False  # a task has entered slot() for this job
    waiter: asyncio.Future[None] | None = field(default=None, repr=False)


class TryOnScheduler:
    """Hands out ``max_concurrent`` DashScope slots first come, first served across users."""

    def __init__(
        self,
        limits: SchedulerLimits = SchedulerLimits(),  # frozen: safe to share
        on_positions: PositionListener | None = None,
    ) -> None:
        self.limits = limits
        self._on_positions = on_positions
        self._jobs: dict[str, _Job] = {}
        # Both dicts keep insertion order: the line is ``_waiting`` in reserve order.
        self._waiting: dict[str, _Job] = {}
        self._running: dict[str, _Job] = {}
        self._user_running: Counter[int] = Counter()
        self._user_waiting: Counter[int] = Counter()
        self._positions: dict[str, int] = {}
        # user -> request (a batch id, or a lone job's id) -> jobs of it still held
        self._requests: dict[int, Counter[str]] = {}

    # -- public API ---------------------------------------------------------------------

    def listen(self, on_positions: PositionListener) -> None:
        """Sets the one listener told about places in line (the runner, once it exists)."""
        self._on_positions = on_positions

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def has_room(self, user_id: int) -> bool:
        """Whether the user may start one more try-on now (checked before asking for photos)."""
        return (
            self.requests_of(user_id) < self.limits.per_user_running + self.limits.per_user_waiting
        )

    def requests_of(self, user_id: int) -> int:
        """How many requests (lone jobs or whole batches) the user holds."""
        return len(self._requests.get(user_id, ()))

    def reserve(self, job_id: str, user_id: int, batch: str | None = None) -> None:
        """Admit a job at the end of the line, or raise :class:`QueueFull`.

        Reserving a job id that is already known is a no-op, so retries are harmless.
        Jobs of a `batch` already admitted join it without counting as a new request.
        """
        if job_id in self._jobs:
            return
        running = self._user_running[user_id]
        waiting = self._user_waiting[user_id]
        joins = batch is not None and batch in self._requests.get(user_id, ())
        if not joins and not self.has_room(user_id):
            raise QueueFull(running, waiting)
        job = _Job(job_id, user_id, batch)
        self._hold(job)
        self._jobs[job_id] = job
        self._waiting[job_id] = job
        self._user_waiting[user_id] += 1
        self._publish()

    def slot(self, job_id: str) -> AbstractAsyncContextManager[None]:
        """Wait until the job may run, then hold a slot until the block exits.

        Raises ``KeyError`` for a job that was never reserved (or already left).
        Cancelling the waiting task takes the job out of the line; leaving the block in
        any way frees the slot for the next eligible job.
        """
        job = self._jobs[job_id]
        if job.entered:
            raise RuntimeError(f"slot() already entered for job {job_id!r}")
        return self._slot(job)

    def release(self, job_id: str) -> None:
        """Drop a waiting job that will not run; no-op if unknown or already running.

        A running job keeps its slot until its ``async with`` block exits, because its
        DashScope task is still in flight. If a task is already awaiting ``slot()`` for the
        released job, that await is cancelled (it raises ``CancelledError``).
        """
        job = self._jobs.get(job_id)
        if job is None or job.state != "waiting":
            return
        self._remove(job)
        if job.waiter is not None and not job.waiter.done():
            job.waiter.cancel()
        self._dispatch()

    def position(self, job_id: str) -> int | None:
        """1-based place among waiting jobs; ``None`` if running or unknown."""
        return self._positions.get(job_id)

    def adopt_running(self, job_id: str, user_id: int, batch: str | None = None) -> None:
        """Count a job already in flight at DashScope (restart recovery) as running now.

        This may push ``running`` above ``max_concurrent``: those tasks exist whether we
        like it or not, so nothing new starts until the count drops below the limit. The
        job still uses ``async with slot(job_id)``, which then returns at once.
        """
        job = self._jobs.get(job_id)
        if job is None:
            job = _Job(job_id, user_id, batch)
            self._jobs[job_id] = job
            self._hold(job)
        elif job.state == "running":
            return
        else:
            del self._waiting[job_id]
            _decrement(self._user_waiting, job.user_id)
        self._mark_running(job)
        self._publish()

    def snapshot(self) -> list[tuple[str, int, str]]:
        """``(job_id, user_id, state)``: running jobs in start order, then the line."""
        jobs = [*self._running.values(), *self._waiting.values()]
        return [(j.job_id, j.user_id, str(j.state)) for j in jobs]

    # -- internals ------------------------------------------------------------------------

    @asynccontextmanager
    async def _slot(self, job: _Job) -> AsyncIterator[None]:
        if self._jobs.get(job.job_id) is not job:
            raise KeyError(job.job_id)
        job.entered = True
        if job.state == "waiting":
            job.waiter = asyncio.get_running_loop().create_future()
            self._dispatch()
            try:
                await job.waiter  # returns at once if _dispatch() already started us
            except asyncio.CancelledError:
                # Cancelled in line, released, or cancelled just after being granted.
                self._remove(job)
                self._dispatch()
                raise
        try:
            yield
        finally:
            self._remove(job)
            self._dispatch()

    def _dispatch(self) -> None:
        """Start the earliest eligible waiters while slots are free, then publish places."""
        free = self.limits.max_concurrent - len(self._running)
        if free > 0:
            for job in list(self._waiting.values()):
                if job.waiter is None or job.waiter.done():
                    continue  # not awaiting slot() yet; keeps its place meanwhile
                if self._user_running[job.user_id] >= self.limits.per_user_running:
                    continue  # user busy: skip without blocking those behind
                del self._waiting[job.job_id]
                _decrement(self._user_waiting, job.user_id)
                self._mark_running(job)
                job.waiter.set_result(None)
                free -= 1
                if free == 0:
                    break
        if free > 0:
            self._dispatch_batches(free)
        self._publish()

    def _dispatch_batches(self, free: int) -> None:
        """With slots still free and nobody else in line, a batch's next jobs may start."""
        ready = [j for j in self._waiting.values() if j.waiter is not None and not j.waiter.done()]
        if not ready or len({j.user_id for j in self._waiting.values()}) != 1:
            return
        for job in ready:
            if job.batch is None or free == 0:
                continue
            del self._waiting[job.job_id]
            _decrement(self._user_waiting, job.user_id)
            self._mark_running(job)
            assert job.waiter is not None
            job.waiter.set_result(None)
            free -= 1

    def _hold(self, job: _Job) -> None:
        self._requests.setdefault(job.user_id, Counter())[job.batch or job.job_id] += 1

    def _unhold(self, job: _Job) -> None:
        held = self._requests.get(job.user_id)
        if held is None:
            return
        _decrement(held, job.batch or job.job_id)
        if not held:
            del self._requests[job.user_id]

    def _mark_running(self, job: _Job) -> None:
        job.state = "running"
        self._running[job.job_id] = job
        self._user_running[job.user_id] += 1

    def _remove(self, job: _Job) -> None:
        """Forget a job wherever it is; safe to call more than once."""
        if self._jobs.get(job.job_id) is not job:
            return
        del self._jobs[job.job_id]
        self._unhold(job)
        if job.state == "running":
            del self._running[job.job_id]
            _decrement(self._user_running, job.user_id)
        else:
            del self._waiting[job.job_id]
            _decrement(self._user_waiting, job.user_id)

    def _publish(self) -> None:
        """Recompute places and tell the listener if any changed."""
        positions = {job_id: place for place, job_id in enumerate(self._waiting, start=1)}
        if positions == self._positions:
            return
        self._positions = positions
        if self._on_positions is not None:
            try:
                self._on_positions(dict(positions))
            except Exception:
                # A broken notifier must not wedge the line or fail someone else's job.
                log.exception("position listener failed")


def _decrement(counts: Counter[K], key: K) -> None:
    """Count down, dropping zero entries so idle users do not accumulate."""
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]
