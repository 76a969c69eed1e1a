"""The database probe behind /healthz, and the Bot API request class that feeds the
heartbeat (services.metrics.Health) and the Telegram error metrics."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import httpx
from telegram.request import HTTPXRequest

from services.metrics import Health, Metrics


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
