"""The quota ledger: per UTC day and per user, how many try-ons DashScope accepted, how
many it billed (SUCCEEDED) and how many it ended FAILED or CANCELED (not billed).

Nothing but retention deletes a ledger row: /forget removes a user's jobs, not what they
used today, so it cannot buy another try-on. A row carries no user id: its key is an HMAC
of the day and the user id under a random salt kept in the database (`meta`), so rows of
different days cannot be linked, and the key serves only the day's limit check. Per-user
rows are kept for today and yesterday; older ones are folded into one anonymous total
per day (`user_key = '*'`, kept for `TOTALS_KEEP_DAYS` days for statistics).

The ledger is written by JobStore in the same transaction as the state change that
proves each count (see `JobStore.update`).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import aiosqlite

from services.model import JobState

TOTAL_KEY = "*"
SALT_KEY = "ledger_salt"
USER_ROWS_KEEP_DAYS = 2  # today and yesterday: all the daily check can still need
TOTALS_KEEP_DAYS = 400


@dataclass(frozen=True)
class LedgerCounts:
    accepted: int = 0  # tasks DashScope accepted (a task id was stored)
    billed: int = 0  # of those, tasks that SUCCEEDED (DashScope bills them)
    unbilled: int = 0  # of those, tasks DashScope itself ended FAILED or CANCELED

    @property
    def used(self) -> int:
        """What the daily limit and budget count: accepted and not known to be free."""
        return self.accepted - self.unbilled


def user_key(salt: str, day: str, user_id: int) -> str:
    return hmac.new(salt.encode(), f"{day}|{user_id}".encode(), hashlib.sha256).hexdigest()


async def load_salt(conn: aiosqlite.Connection) -> str:
    async with conn.execute("SELECT value FROM meta WHERE key = ?", (SALT_KEY,)) as cursor:
        row = await cursor.fetchone()
    if row is None:  # the migration creates it; never expected
        raise RuntimeError("the quota ledger's salt is missing from the meta table")
    return str(row[0])


async def add(
    conn: aiosqlite.Connection,
    day: str,
    key: str,
    *,
    accepted: int = 0,
    billed: int = 0,
    unbilled: int = 0,
) -> None:
    """Adds to one ledger row (inside the caller's transaction)."""
    await conn.execute(
        "INSERT INTO quota_ledger (day, user_key, accepted, billed, unbilled) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (day, user_key) DO UPDATE SET "
        "accepted = accepted + excluded.accepted, billed = billed + excluded.billed, "
        "unbilled = unbilled + excluded.unbilled",
        (day, key, accepted, billed, unbilled),
    )


# What a job's row proves, whatever wrote it: a task id (or a state that has one) means
# DashScope accepted the task; SUCCEEDED (by the job or by the task) means it was billed;
# a task DashScope itself ended FAILED or CANCELED was not billed and gives the try-on back.
ACCEPTED_STATES = (JobState.RUNNING, JobState.SUCCEEDED, JobState.DELIVERED)
_BILLED_STATES = (JobState.SUCCEEDED, JobState.DELIVERED)
_UNBILLED_TASK_STATUSES = ("FAILED", "CANCELED")
COUNTED_TASK_STATUSES = ("SUCCEEDED", *_UNBILLED_TASK_STATUSES)


# The job columns `settle_row` reads.
SETTLE_COLUMNS = (
    "id, user_id, day, state, task_id, task_status, ledger_accepted, ledger_billed, ledger_unbilled"
)


async def settle(conn: aiosqlite.Connection, salt: str, where: str, params: tuple[Any, ...]) -> int:
    """`settle_row` for every job row selected by `where`; returns how many changed."""
    async with conn.execute(f"SELECT {SETTLE_COLUMNS} FROM jobs WHERE {where}", params) as cursor:
        rows = list(await cursor.fetchall())
    return sum([await settle_row(conn, salt, row) for row in rows])


async def settle_row(conn: aiosqlite.Connection, salt: str, row: aiosqlite.Row) -> bool:
    """Records in the ledger what one job row (its SETTLE_COLUMNS) proves and the ledger
    does not hold yet: each job counts at most once per column, as its `ledger_*` flags
    say. Runs inside the caller's transaction; returns whether the ledger changed."""
    state = JobState(row["state"])
    accepted = row["task_id"] is not None or state in ACCEPTED_STATES
    billed = state in _BILLED_STATES or row["task_status"] == "SUCCEEDED"
    unbilled = accepted and not billed and row["task_status"] in _UNBILLED_TASK_STATUSES
    delta_accepted = int((accepted or billed) and not row["ledger_accepted"])
    delta_billed = int(billed and not row["ledger_billed"] and not row["ledger_unbilled"])
    delta_unbilled = int(unbilled and not row["ledger_unbilled"] and not row["ledger_billed"])
    if not (delta_accepted or delta_billed or delta_unbilled):
        return False
    day = str(row["day"])
    await add(
        conn,
        day,
        user_key(salt, day, int(row["user_id"])),
        accepted=delta_accepted,
        billed=delta_billed,
        unbilled=delta_unbilled,
    )
    await conn.execute(
        "UPDATE jobs SET ledger_accepted = ledger_accepted | ?, "
        "ledger_billed = ledger_billed | ?, ledger_unbilled = ledger_unbilled | ? "
        "WHERE id = ?",
        (delta_accepted, delta_billed, delta_unbilled, row["id"]),
    )
    return True
