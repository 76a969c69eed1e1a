"""Reports to the admins' private chats (TRYON_ADMIN_IDS), rate-limited and de-duplicated:
at most one per kind per 10 minutes; the next one says how many were held back.

Reports carry no secret (the redaction filter runs over every text) and never a user's
photo or words: a kind, a short description and, for exceptions, an id found in the log.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from telegram import Bot
from telegram.error import TelegramError

from services.metrics import Metrics

log = logging.getLogger(__name__)

WINDOW = 600.0

# Report kinds.
ACCOUNT = "account"  # invalid key, arrears, access denied, model unavailable
EXCEPTION = "exception"
BUDGET_80 = "budget_80"
BUDGET_100 = "budget_100"
GIVEN_UP = "job_given_up"

TITLES = {
    ACCOUNT: "🔑 DashScope account problem",
    EXCEPTION: "💥 Unexpected error",
    BUDGET_80: "💰 Daily budget at 80 %",
    BUDGET_100: "💰 Daily budget spent",
    GIVEN_UP: "⌛ Try-on given up",
}


def error_id() -> str:
    """A short id that ties a report to its log line."""
    return uuid.uuid4().hex[:8]


@dataclass
class _Kind:
    last_sent: float
    delivered: bool  # whether at least one admin got the last report of this kind
    held_back: int = 0


class AdminReporter:
    def __init__(
        self,
        bot: Bot,
        admin_ids: Iterable[int],
        *,
        redact: Callable[[str], str] = lambda text: text,
        metrics: Metrics | None = None,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bot = bot
        self.admin_ids = sorted(admin_ids)
        self._redact = redact  # removes secrets (bot.logs.RedactingFilter.redact)
        self._metrics = metrics
        self._window = window
        self._clock = clock
        self._kinds: dict[str, _Kind] = {}

    def recently_notified(self, kind: str) -> bool:
        """Whether an admin received a report of this kind within the window."""
        state = self._kinds.get(kind)
        return (
            state is not None and state.delivered and self._clock() - state.last_sent < self._window
        )

    async def report(self, kind: str, text: str) -> bool:
        """Sends (or counts, within the window) a report; True when an admin has it."""
        if not self.admin_ids:
            return False
        now = self._clock()
        state = self._kinds.get(kind)
        if state is not None and now - state.last_sent < self._window:
            state.held_back += 1
            return state.delivered
        held_back = state.held_back if state is not None else 0
        body = f"{TITLES.get(kind, kind)}\n{self._redact(text)}"
        if held_back:
            body += f"\n(+{held_back} more of this kind in the last {self._window / 60:g} min)"
        delivered = False
        for admin in self.admin_ids:
            try:
                await self._bot.send_message(admin, body[:4000])
                delivered = True
            except TelegramError as error:
                log.warning(
                    "Could not send a report to admin %s: %s (they must /start the bot once)",
                    admin,
                    error,
                )
        self._kinds[kind] = _Kind(now, delivered)
        if delivered and self._metrics is not None:
            self._metrics.admin_reports.labels(kind).inc()
        return delivered
