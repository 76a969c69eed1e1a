"""The quota ledger: per UTC day and per user, how many try-ons DashScope accepted, how
many it billed (SUCCEEDED) and how many it ended FAILED or CANCELED (not billed).

Nothing but retention deletes a ledger row: /forget removes a user's jobs, not what they
used today, so it cannot buy another try-on. A row carries no user id: its key is an HMAC
of the day and the user id under a random salt kept in the database (`meta`), so rows of
different days cannot be linked, and the key serves only the day's limit check. Per-user
rows are kept for today and yesterday; older ones are folded into one anonymous total
per day (`user_key = '*'`, kept for `TOTALS_KEEP_DAYS` days for statistics).

The ledger is written by triggers on the jobs table (`TRIGGERS`), in the same statement
as the state change that proves each count.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import aiosqlite

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


def _trigger_body() -> str:
    """What a job row proves, whoever wrote it: a task id (or a state that has one) means
    DashScope accepted the task; SUCCEEDED (the job's or the task's) means it was billed;
    a task DashScope itself ended FAILED or CANCELED was not billed and gives the try-on
    back. Each job counts at most once per column (its `ledger_*` flags)."""
    status = "COALESCE(NEW.task_status, '')"
    accepted = (
        "(NEW.task_id IS NOT NULL OR NEW.state IN ('running', 'succeeded', 'delivered') "
        f"OR {status} = 'SUCCEEDED')"
    )
    billed = f"(NEW.state IN ('succeeded', 'delivered') OR {status} = 'SUCCEEDED')"
    unbilled = f"({accepted} AND NOT {billed} AND {status} IN ('FAILED', 'CANCELED'))"
    d_accepted = f"({accepted} AND NEW.ledger_accepted = 0)"
    d_billed = f"({billed} AND NEW.ledger_billed = 0 AND NEW.ledger_unbilled = 0)"
    d_unbilled = f"({unbilled} AND NEW.ledger_unbilled = 0 AND NEW.ledger_billed = 0)"
    changed = f"({d_accepted} OR {d_billed} OR {d_unbilled})"
    return f"""
    BEGIN
        INSERT INTO quota_ledger (day, user_key, accepted, billed, unbilled)
            SELECT NEW.day, NEW.ledger_key, {d_accepted}, {d_billed}, {d_unbilled}
            WHERE {changed}
            ON CONFLICT (day, user_key) DO UPDATE SET
                accepted = accepted + excluded.accepted,
                billed = billed + excluded.billed,
                unbilled = unbilled + excluded.unbilled;
        UPDATE jobs SET
            ledger_accepted = ledger_accepted | {d_accepted},
            ledger_billed = ledger_billed | {d_billed},
            ledger_unbilled = ledger_unbilled | {d_unbilled}
        WHERE id = NEW.id AND {changed};
    END;
    """


# The ledger is kept by triggers, so a count is written by the very statement that
# writes the job state proving it (one atomic statement, whoever runs it). `ledger_key`
# is set on the job row when it is created (JobStore.create: user_key of its day).
TRIGGERS = f"""
    CREATE TRIGGER jobs_ledger_on_insert AFTER INSERT ON jobs
    WHEN NEW.ledger_key IS NOT NULL {_trigger_body()}
    CREATE TRIGGER jobs_ledger_on_update AFTER UPDATE OF state, task_id, task_status ON jobs
    WHEN NEW.ledger_key IS NOT NULL {_trigger_body()}
"""
