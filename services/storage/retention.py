"""Retention: what the bot keeps, and for how long.

- Finished jobs (user and chat ids, Telegram file ids, signed result URLs) are deleted
  `retention_days` after their last change. Jobs still running are never touched.
- Upload cache entries are deleted once their `oss://` URL has expired.
- The quota ledger keeps per-user rows (salted, per-day keys) for today and yesterday,
  all the daily check can need; older days are folded into one anonymous total per day,
  kept `TOTALS_KEEP_DAYS` days for statistics.

`prune(now)` runs at start-up and then hourly (`run_forever`, started by bot/app.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.model import utc_day
from services.storage import ledger
from services.storage.database import Database
from services.storage.jobs import FINAL_STATES

log = logging.getLogger(__name__)
DAY = 86400.0
PRUNE_INTERVAL = 3600.0


@dataclass(frozen=True)
class Pruned:
    jobs: int = 0
    uploads: int = 0
    ledger_rows: int = 0  # per-user rows folded into day totals, and expired totals

    def __bool__(self) -> bool:
        return bool(self.jobs or self.uploads or self.ledger_rows)


class Retention:
    def __init__(self, db: Database, *, retention_days: int) -> None:
        self._db = db
        self.retention_days = retention_days

    async def prune(self, now: float) -> Pruned:
        """Deletes what is past its retention, in one transaction."""
        final = tuple(s.value for s in FINAL_STATES)
        marks = ", ".join("?" for _ in final)
        keep_users_from = utc_day(now - (ledger.USER_ROWS_KEEP_DAYS - 1) * DAY)
        keep_totals_from = utc_day(now - (ledger.TOTALS_KEEP_DAYS - 1) * DAY)
        async with self._db.transaction() as conn:
            jobs = await conn.execute(
                f"DELETE FROM jobs WHERE state IN ({marks}) AND updated_at < ?",
                (*final, now - self.retention_days * DAY),
            )
            uploads = await conn.execute("DELETE FROM uploads WHERE expires_at <= ?", (now,))
            await conn.execute(
                "INSERT INTO quota_ledger (day, user_key, accepted, billed, unbilled) "
                "SELECT day, ?1, SUM(accepted), SUM(billed), SUM(unbilled) FROM quota_ledger "
                "WHERE day < ?2 AND user_key != ?1 GROUP BY day "
                "ON CONFLICT (day, user_key) DO UPDATE SET "
                "accepted = accepted + excluded.accepted, billed = billed + excluded.billed, "
                "unbilled = unbilled + excluded.unbilled",
                (ledger.TOTAL_KEY, keep_users_from),
            )
            folded = await conn.execute(
                "DELETE FROM quota_ledger WHERE day < ? AND user_key != ?",
                (keep_users_from, ledger.TOTAL_KEY),
            )
            expired = await conn.execute(
                "DELETE FROM quota_ledger WHERE day < ?", (keep_totals_from,)
            )
        pruned = Pruned(jobs.rowcount, uploads.rowcount, folded.rowcount + expired.rowcount)
        if pruned:
            log.info(
                "Retention: deleted %d finished job(s) older than %d days, %d expired "
                "upload(s); %d quota ledger row(s) folded or expired",
                pruned.jobs,
                self.retention_days,
                pruned.uploads,
                pruned.ledger_rows,
            )
        return pruned


async def run_forever(
    retention: Retention,
    interval: float = PRUNE_INTERVAL,
    clock: Callable[[], float] = time.time,
) -> None:
    """Prunes now and then every `interval` seconds; an error is logged and the loop goes
    on (the next round tries again). Ends only when cancelled."""
    while True:
        try:
            await retention.prune(clock())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Retention: pruning failed; trying again in %.0f s", interval)
        await asyncio.sleep(interval)
