"""Cost control: the allowlist, each user's daily try-ons and the whole bot's daily budget
(both counted by JobStore.count_used from the quota ledger, which /forget does not touch)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.model import utc_day
from services.storage.jobs import JobStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refusal:
    reason: str  # "daily_limit" | "budget"
    resets_in: float  # seconds until the next UTC day, when the counts start again


def seconds_to_next_day(now: float) -> float:
    today = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today + timedelta(days=1)).timestamp() - now


class QuotaPolicy:
    def __init__(
        self,
        store: JobStore,
        *,
        user_daily_limit: int,
        daily_budget: int,
        allowed_chats: frozenset[int],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.user_daily_limit = user_daily_limit
        self.daily_budget = daily_budget
        self.allowed_chats = allowed_chats
        self._clock = clock

    def allowed(self, chat_id: int, user_id: int) -> bool:
        """With an allowlist, either the user or the chat must be on it."""
        return not self.allowed_chats or bool({chat_id, user_id} & self.allowed_chats)

    async def check(self, user_id: int, count: int = 1) -> Refusal | None:
        """Whether `count` more try-ons fit today's limits (0 means no limit)."""
        now = self._clock()
        day = utc_day(now)
        if self.user_daily_limit:
            used = await self._store.count_used(day, user_id)
            if used + count > self.user_daily_limit:
                log.info("user %s refused: daily limit %d reached", user_id, used)
                return Refusal("daily_limit", seconds_to_next_day(now))
        if self.daily_budget:
            spent = await self._store.count_used(day)
            if spent + count > self.daily_budget:
                log.warning("user %s refused: the bot's daily budget (%d) is spent", user_id, spent)
                return Refusal("budget", seconds_to_next_day(now))
        return None

    async def remaining(self, user_id: int) -> int | None:
        """Try-ons the user may still start today (None: no limit applies)."""
        day = utc_day(self._clock())
        left = []
        if self.user_daily_limit:
            left.append(self.user_daily_limit - await self._store.count_used(day, user_id))
        if self.daily_budget:
            left.append(self.daily_budget - await self._store.count_used(day))
        return max(0, min(left)) if left else None
