"""Usage and spend for the operator (/stats): plain SQL over the jobs table.

A try-on "started" is a job created (its last input arrived); it is billed when DashScope
produced a result (pricing is per output image), whatever happened to the delivery.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from services.storage.database import Database

# States that end without a result the user asked for.
FAILED_STATES = ("failed", "interrupted")
RESULT_STATES = ("succeeded", "delivered")


@dataclass
class PeriodStats:
    first_day: str
    last_day: str
    users: int = 0
    started: int = 0
    delivered: int = 0
    canceled: int = 0
    failed_by_kind: dict[str, int] = field(default_factory=dict)
    results_by_model: dict[str, int] = field(default_factory=dict)
    durations: list[float] = field(default_factory=list)  # last input → delivered, seconds

    @property
    def failed(self) -> int:
        return sum(self.failed_by_kind.values())

    @property
    def success_rate(self) -> float | None:
        finished = self.delivered + self.failed
        return self.delivered / finished if finished else None

    def percentile(self, p: float) -> float | None:
        return percentile(self.durations, p)

    def spend(self, prices: dict[str, float]) -> dict[str, float]:
        return {m: n * prices.get(m, 0.0) for m, n in sorted(self.results_by_model.items())}


@dataclass
class DayCounts:
    day: str
    delivered: int = 0
    failed: int = 0
    canceled: int = 0
    other: int = 0  # still running, or waiting for delivery

    @property
    def total(self) -> int:
        return self.delivered + self.failed + self.canceled + self.other


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def day_range(today: str, days: int) -> tuple[str, str]:
    last = datetime.strptime(today, "%Y-%m-%d").replace(tzinfo=UTC)
    first = last - timedelta(days=days - 1)
    return first.strftime("%Y-%m-%d"), today


class StatsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def period(self, first_day: str, last_day: str) -> PeriodStats:
        stats = PeriodStats(first_day, last_day)
        where = "day BETWEEN ? AND ?"
        span = (first_day, last_day)
        row = await self.db.fetchone(
            f"SELECT COUNT(DISTINCT user_id), COUNT(*) FROM jobs WHERE {where}", span
        )
        if row is not None:
            stats.users, stats.started = int(row[0]), int(row[1])
        for row in await self.db.fetchall(
            f"SELECT state, COALESCE(error_kind, 'unknown'), COUNT(*) FROM jobs WHERE {where} "
            "GROUP BY 1, 2",
            span,
        ):
            state, kind, count = str(row[0]), str(row[1]), int(row[2])
            if state == "delivered":
                stats.delivered += count
            elif state in FAILED_STATES or state == "retried":
                stats.failed_by_kind[kind] = stats.failed_by_kind.get(kind, 0) + count
            elif state == "canceled":
                stats.canceled += count
        marks = ", ".join("?" for _ in RESULT_STATES)
        for row in await self.db.fetchall(
            f"SELECT model, COUNT(*) FROM jobs WHERE {where} "
            f"AND (state IN ({marks}) OR result_url IS NOT NULL) GROUP BY model",
            (*span, *RESULT_STATES),
        ):
            stats.results_by_model[str(row[0])] = int(row[1])
        stats.durations = [
            float(row[0])
            for row in await self.db.fetchall(
                f"SELECT delivered_at - created_at FROM jobs WHERE {where} "
                "AND state = 'delivered' AND delivered_at IS NOT NULL",
                span,
            )
        ]
        return stats

    async def per_day(self, first_day: str, last_day: str) -> list[DayCounts]:
        """One entry per day of the range, days without try-ons included."""
        counts: dict[str, DayCounts] = {}
        day = datetime.strptime(first_day, "%Y-%m-%d")
        while (name := day.strftime("%Y-%m-%d")) <= last_day:
            counts[name] = DayCounts(name)
            day += timedelta(days=1)
        for row in await self.db.fetchall(
            "SELECT day, state, COUNT(*) FROM jobs WHERE day BETWEEN ? AND ? GROUP BY 1, 2",
            (first_day, last_day),
        ):
            entry = counts.get(str(row[0]))
            if entry is None:
                continue
            state, count = str(row[1]), int(row[2])
            if state == "delivered":
                entry.delivered += count
            elif state in (*FAILED_STATES, "retried"):
                entry.failed += count
            elif state == "canceled":
                entry.canceled += count
            else:
                entry.other += count
        return list(counts.values())
