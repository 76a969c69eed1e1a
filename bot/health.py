"""What /healthz reports: the update loop's heartbeat, DashScope's last answers, the
database's writability; and the Bot API request class that feeds the heartbeat and metrics."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from telegram.request import HTTPXRequest

from bot.metrics import Metrics

STALE_AFTER = 90.0


@dataclass
class Health:
    """Heartbeats, on a monotonic clock tests may replace."""

    clock: Callable[[], float] = time.monotonic
    stale_after: float = STALE_AFTER
    last_loop: float | None = None  # an update arrived or a poll completed
    dashscope_asked: float | None = None  # the last request that got no answer
    dashscope_answered: float | None = None
    account_problem: str | None = None  # set while DashScope refuses the account
    notes: dict[str, Any] = field(default_factory=dict)

    def beat(self) -> None:
        self.last_loop = self.clock()

    def dashscope(self, status: int) -> None:
        if status:
            self.dashscope_answered = self.clock()
        else:
            self.dashscope_asked = self.clock()

    def loop_problem(self) -> str | None:
        now = self.clock()
        if self.last_loop is None or now - self.last_loop > self.stale_after:
            return f"no update or poll completed in the last {self.stale_after:g} s"
        return None

    def dashscope_problem(self) -> str | None:
        """DashScope answered recently, or nothing was asked since its last answer."""
        if self.dashscope_asked is None:
            return None
        if self.dashscope_answered is not None and self.dashscope_answered >= self.dashscope_asked:
            return None
        last = self.dashscope_answered
        if last is not None and self.clock() - last <= self.stale_after:
            return None
        return f"DashScope has not answered for {self.stale_after:g} s (network?)"


def database_writable(path: Path) -> str | None:
    """A fresh connection writes and rolls back: None when that works."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=2)
    except sqlite3.Error as error:
        return f"database {path} cannot be opened for writing: {error}"
    try:
        conn.execute("BEGIN IMMEDIATE")
        # A write that is rolled back: a connection SQLite opened read-only fails here.
        conn.execute("CREATE TABLE _health_probe (x)")
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError as error:
        if "locked" in str(error):  # another writer holds it: writable
            return None
        return f"database {path} is not writable: {error}"
    except sqlite3.Error as error:
        return f"database {path} is not writable: {error}"
    finally:
        conn.close()
    return None


async def database_problem(path: Path) -> str | None:
    return await asyncio.to_thread(database_writable, path)


class ObservedRequest(HTTPXRequest):
    """PTB's HTTPX request, counting failures by method and beating the heart on each
    completed getUpdates (long polling) and getWebhookInfo (webhook mode's self-check)."""

    def __init__(self, metrics: Metrics, health: Health, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._metrics = metrics
        self._health = health

    async def do_request(
        self, url: str, method: str, *args: Any, **kwargs: Any
    ) -> tuple[int, bytes]:
        api_method = url.rsplit("/", 1)[-1]
        try:
            status, payload = await super().do_request(url, method, *args, **kwargs)
        except Exception as error:
            code = "timeout" if isinstance(error.__cause__, httpx.TimeoutException) else "network"
            if not (api_method == "getUpdates" and code == "timeout"):
                self._metrics.telegram_errors.labels(api_method, code).inc()
            raise
        if status >= 400:
            self._metrics.telegram_errors.labels(api_method, str(status)).inc()
        elif api_method in ("getUpdates", "getWebhookInfo"):
            self._health.beat()
        return status, payload
