"""Records the DashScope double keeps: tasks, stored objects and results, scripted outcomes
and faults, and the server-side sliding windows that play the account's rate limits
(dashscope-api.md §4 "Rate limits", §5).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from tests.doubles.dashscope.wire import BEIJING


@dataclass
class Outcome:
    """How a task ends, scripted by a test (`script_next_task`, `complete`, `fail`)."""

    status: Literal["SUCCEEDED", "FAILED"]
    code: str | None = None
    message: str | None = None


@dataclass(eq=False)
class FakeTask:
    """One async task (try-on or refiner), as the tasks API reports it (§5)."""

    task_id: str
    model: str
    body: dict[str, Any]
    oss_resolve: bool
    submit_time: float
    request_id: str
    held: bool = False
    outcome: Outcome | None = None
    status: str = "PENDING"
    scheduled_time: float | None = None
    end_time: float | None = None
    image_url: str | None = None
    code: str | None = None
    message: str | None = None
    released: asyncio.Event = field(default_factory=asyncio.Event)
    slot: asyncio.Event = field(default_factory=asyncio.Event)
    runner: asyncio.Task[None] | None = None

    @property
    def inputs(self) -> dict[str, str]:
        value = self.body.get("input")
        return value if isinstance(value, dict) else {}


@dataclass
class StoredObject:
    """An ``oss://`` temp-storage object: bound to the model its policy was issued for (§1)."""

    data: bytes
    model: str | None
    expires_at: float


@dataclass
class StoredResult:
    """An image behind a pre-signed result URL (a task result or a parsing crop), 24 h."""

    data: bytes
    expires_at: float


@dataclass
class Fault:
    """A scripted answer for the next request to one endpoint (`fail_next`, `drop_next`, ...)."""

    action: Literal["fail", "drop", "delay"]
    status: int = 0
    code: str | None = None
    message: str | None = None
    retry_after: float | None = None
    seconds: float = 0.0
    process: bool = True  # drop: let the request take effect first
    after_processing: bool = False  # fail: the request takes effect, then the error answers


class Window:
    """Server-side sliding window: admits at most ``rate`` requests per ``period`` seconds."""

    def __init__(self, rate: int, period: float = 1.0) -> None:
        self.rate, self.period = rate, period
        self._times: deque[float] = deque()

    def admit(self) -> bool:
        now = time.monotonic()
        while self._times and now - self._times[0] >= self.period:
            self._times.popleft()
        if len(self._times) >= self.rate:
            return False
        self._times.append(now)
        return True


def max_in_window(times: Iterable[float], window: float) -> int:
    ordered = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def time_window(query: Any, now: float) -> tuple[float, float]:
    """``start_time``/``end_time`` as ``YYYYMMDDhhmmss`` Beijing time. Missing ends make a
    24 h window: the last 24 h, 24 h up to `end_time`, or 24 h from `start_time` (at most
    up to now)."""

    def parse(name: str) -> float | None:
        value = query.get(name)
        if not value:
            return None
        return datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=BEIJING).timestamp()

    start, end = parse("start_time"), parse("end_time")
    day = 24 * 3600
    if start is None and end is None:
        return now - day, now + 1
    if start is None:
        assert end is not None
        return end - day, end
    if end is None:
        return start, min(start + day, now + 1)
    return start, end


@dataclass
class Outage:
    """Every request to `endpoint` fails with this error until `until` (time.monotonic())."""

    endpoint: str
    until: float
    status: int
    code: str
    message: str | None = None
    retry_after: float | None = None
