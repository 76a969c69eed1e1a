"""The try-on jobs table.

A job row is written before anything costs money and is moved forward at each
step, so that a restart can tell exactly how far every try-on got.
"""

from __future__ import annotations

import enum
import json
import time
from dataclasses import dataclass, replace
from typing import Any

import aiosqlite

from services.model import (
    ACTIVE_STATES,
    InputImage,
    Job,
    JobKind,
    JobState,
    utc_day,
)
from services.storage import ledger
from services.storage.database import Database
from services.storage.ledger import LedgerCounts

# A job in one of these states is over: nothing writes it again except the user's Retry.
# (The jobs_forget_on_end trigger of migration 3 lists the same states.)
FINAL_STATES = (
    JobState.DELIVERED,
    JobState.FAILED,
    JobState.CANCELED,
    JobState.INTERRUPTED,
    JobState.RETRIED,
)
# Admitted, not yet accepted by DashScope: counts towards the quotas until it is accepted
# (then the ledger counts it) or ends without a task (then nothing does).
_ADMITTED_STATES = (JobState.QUEUED, JobState.SUBMITTING)


def _marks(values: tuple[Any, ...]) -> str:
    return ", ".join("?" for _ in values)


def _row_to_job(row: aiosqlite.Row) -> Job:
    def image(slot: str) -> InputImage | None:
        if row[f"{slot}_file_id"] is None:
            return None
        return InputImage(
            file_id=row[f"{slot}_file_id"],
            unique_id=row[f"{slot}_unique_id"],
            file_size=row[f"{slot}_file_size"],
            url=row[f"{slot}_url"],
        )

    person = image("person")
    assert person is not None
    return Job(
        id=row["id"],
        chat_id=row["chat_id"],
        user_id=row["user_id"],
        lang=row["lang"],
        model=row["model"],
        person=person,
        top=image("top"),
        bottom=image("bottom"),
        thread_id=row["thread_id"],
        request_message_id=row["request_message_id"],
        status_message_id=row["status_message_id"],
        state=JobState(row["state"]),
        task_id=row["task_id"],
        task_status=row["task_status"],
        result_url=row["result_url"],
        error_kind=row["error_kind"],
        error_code=row["error_code"],
        result_message_id=row["result_message_id"],
        uploads_expire_at=row["uploads_expire_at"],
        created_at=row["created_at"],
        submit_intent_at=row["submit_intent_at"],
        submitted_at=row["submitted_at"],
        finished_at=row["finished_at"],
        delivered_at=row["delivered_at"],
        kind=JobKind(row["kind"]),
        keep=row["keep"],
        kept_url=row["kept_url"],
        kept_at=row["kept_at"],
        refinable=bool(row["refinable"]),
        coarse_url=row["coarse_url"],
        gender=row["gender"],
        source_id=row["source_id"],
        batch_id=row["batch_id"],
        batch_index=row["batch_index"],
        batch_size=row["batch_size"],
        result_file_id=row["result_file_id"],
    )


@dataclass(frozen=True)
class FlowEnd:
    """The conversation that asked for a job, as the PTB persistence stores it (plain
    values, so this module stays free of Telegram): the `conversations` row
    (name, key) and, in the `user_data` row of `user_id`, the entry `flow_key` of the
    mapping under `flows_key` (the draft)."""

    user_id: int
    conversation: str
    conversation_key: str
    flows_key: str
    flow_key: str


class JobStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._salt: str | None = None

    async def create(self, job: Job, flow: FlowEnd | None = None) -> Job:
        """Inserts the job; with `flow`, in the same transaction, ends the conversation and
        drops its draft, so a crash leaves a running job or an open flow, never both."""
        await self.create_all([job], flow)
        return job

    async def create_all(self, jobs: list[Job], flow: FlowEnd | None = None) -> None:
        """Inserts several jobs (a batch) and ends their flow in one transaction."""
        salt = await self._ledger_salt()
        rows = [self._columns(job, salt) for job in jobs]
        async with self._db.transaction() as conn:
            for columns in rows:
                names = ", ".join(columns)
                marks = ", ".join("?" for _ in columns)
                await conn.execute(
                    f"INSERT INTO jobs ({names}) VALUES ({marks})", tuple(columns.values())
                )
            if flow is not None:
                await _end_flow(conn, flow)

    @staticmethod
    def _columns(job: Job, salt: str) -> dict[str, Any]:
        columns: dict[str, Any] = {
            "id": job.id,
            "chat_id": job.chat_id,
            "thread_id": job.thread_id,
            "user_id": job.user_id,
            "lang": job.lang,
            "request_message_id": job.request_message_id,
            "status_message_id": job.status_message_id,
            "model": job.model,
            "state": job.state.value,
            "day": utc_day(job.created_at),
            "created_at": job.created_at,
            "updated_at": job.created_at,
            "kind": job.kind.value,
            "keep": job.keep,
            "kept_url": job.kept_url,
            "kept_at": job.kept_at,
            "refinable": int(job.refinable),
            "coarse_url": job.coarse_url,
            "gender": job.gender,
            "source_id": job.source_id,
            "batch_id": job.batch_id,
            "batch_index": job.batch_index,
            "batch_size": job.batch_size,
        }
        for slot, img in job.inputs().items():
            columns |= {
                f"{slot}_file_id": img.file_id,
                f"{slot}_unique_id": img.unique_id,
                f"{slot}_file_size": img.file_size,
                f"{slot}_url": img.url,
            }
        if job.task_id is not None:
            columns |= {"task_id": job.task_id, "task_status": job.task_status}
        columns["ledger_key"] = ledger.user_key(salt, columns["day"], job.user_id)
        return columns

    async def get(self, job_id: str) -> Job | None:
        row = await self._db.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _row_to_job(row) if row else None

    async def update(self, job: Job, **changes: Any) -> Job:
        """Writes the given columns and returns the job with them applied.

        In the same statement (triggers, see migration 3), the quota ledger records what
        the change proves (a task id stored: accepted; SUCCEEDED: billed; a task DashScope
        ended FAILED or CANCELED: not billed), and a job the user asked to forget while it
        ran is deleted once it reaches a final state."""
        if not changes:
            return job
        columns = {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in changes.items()}
        assignments = ", ".join(f"{name} = ?" for name in columns)
        await self._db.execute(
            f"UPDATE jobs SET {assignments}, updated_at = ? WHERE id = ?",
            (*columns.values(), time.time(), job.id),
        )
        return replace(job, **changes)

    async def _ledger_salt(self) -> str:
        if self._salt is None:
            self._salt = await ledger.load_salt(await self._db.open())
        return self._salt

    async def set_uploaded(self, job: Job, slot: str, url: str, expires_at: float) -> Job:
        image = job.image(slot)
        assert image is not None
        earliest = min(expires_at, job.uploads_expire_at or expires_at)
        await self._db.execute(
            f"UPDATE jobs SET {slot}_url = ?, uploads_expire_at = ?, updated_at = ? WHERE id = ?",
            (url, earliest, time.time(), job.id),
        )
        changes: dict[str, Any] = {slot: replace(image, url=url), "uploads_expire_at": earliest}
        return replace(job, **changes)

    async def active(self) -> list[Job]:
        marks = ", ".join("?" for _ in ACTIVE_STATES)
        rows = await self._db.fetchall(
            f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY created_at",
            tuple(s.value for s in ACTIVE_STATES),
        )
        return [_row_to_job(row) for row in rows]

    async def active_for(self, chat_id: int, user_id: int) -> list[Job]:
        marks = ", ".join("?" for _ in ACTIVE_STATES)
        rows = await self._db.fetchall(
            f"SELECT * FROM jobs WHERE chat_id = ? AND user_id = ? AND state IN ({marks}) "
            "ORDER BY created_at",
            (chat_id, user_id, *(s.value for s in ACTIVE_STATES)),
        )
        return [_row_to_job(row) for row in rows]

    async def count_used(self, day: str, user_id: int | None = None) -> int:
        """Try-ons of the day that count towards the quotas (one user's, or the whole
        bot's): jobs admitted and not yet accepted by DashScope, plus the ledger's accepted
        tasks that DashScope did not end FAILED or CANCELED. /forget lowers neither.
        One statement: a job being accepted meanwhile is counted exactly once."""
        admitted = tuple(s.value for s in _ADMITTED_STATES)
        pending = (
            "SELECT COUNT(*) FROM jobs WHERE day = ? AND ledger_accepted = 0 "
            f"AND state IN ({_marks(admitted)})"
        )
        pending_params: list[Any] = [day, *admitted]
        ledger_where, ledger_params = await self._ledger_where(day, user_id)
        if user_id is not None:
            pending += " AND user_id = ?"
            pending_params.append(user_id)
        row = await self._db.fetchone(
            f"SELECT ({pending}) + (SELECT COALESCE(SUM(accepted - unbilled), 0) "
            f"FROM quota_ledger WHERE {ledger_where})",
            [*pending_params, *ledger_params],
        )
        return int(row[0]) if row else 0

    async def ledger_counts(self, day: str, user_id: int | None = None) -> LedgerCounts:
        """The ledger's counts of the day, for one user or the whole bot (its per-user
        rows, or the day's total once retention folded them into it)."""
        where, params = await self._ledger_where(day, user_id)
        row = await self._db.fetchone(
            "SELECT COALESCE(SUM(accepted), 0), COALESCE(SUM(billed), 0), "
            f"COALESCE(SUM(unbilled), 0) FROM quota_ledger WHERE {where}",
            params,
        )
        assert row is not None
        return LedgerCounts(int(row[0]), int(row[1]), int(row[2]))

    async def _ledger_where(self, day: str, user_id: int | None) -> tuple[str, list[Any]]:
        if user_id is None:
            return "day = ?", [day]
        salt = await self._ledger_salt()
        return "day = ? AND user_key = ?", [day, ledger.user_key(salt, day, user_id)]

    async def owned_task_ids(self, task_ids: list[str]) -> set[str]:
        """Which of these DashScope tasks already belong to a job."""
        if not task_ids:
            return set()
        marks = ", ".join("?" for _ in task_ids)
        rows = await self._db.fetchall(
            f"SELECT task_id FROM jobs WHERE task_id IN ({marks})", tuple(task_ids)
        )
        return {row["task_id"] for row in rows}

    async def unresolved_submits(self, job_id: str, start: float, end: float) -> list[str]:
        """Other jobs whose submit may have created a task between `start` and `end` that
        no job owns yet: still submitting, or ended with the outcome unknown."""
        rows = await self._db.fetchall(
            "SELECT id FROM jobs WHERE id != ? AND task_id IS NULL "
            "AND submit_intent_at BETWEEN ? AND ? "
            "AND (state = ? OR error_kind IN ('submit_unknown', 'interrupted'))",
            (job_id, start, end, JobState.SUBMITTING.value),
        )
        return [row["id"] for row in rows]

    async def undelivered_for(self, chat_id: int, user_id: int, since: float) -> list[Job]:
        """Paid results the user could not receive (blocked the bot), finished after `since`."""
        rows = await self._db.fetchall(
            "SELECT * FROM jobs WHERE chat_id = ? AND user_id = ? AND state = ? "
            "AND result_url IS NOT NULL AND finished_at >= ? ORDER BY created_at",
            (chat_id, user_id, JobState.UNDELIVERED.value, since),
        )
        return [_row_to_job(row) for row in rows]

    async def migrate_chat(self, old_chat_id: int, new_chat_id: int) -> None:
        await self._db.execute(
            "UPDATE jobs SET chat_id = ? WHERE chat_id = ?", (new_chat_id, old_chat_id)
        )

    async def forget_user(self, user_id: int) -> None:
        """Deletes the user's finished jobs (and the upload cache entries of their
        images); a job still running is marked and deleted when it ends. The quota
        ledger, which holds no user id, keeps what the user used today."""
        active = tuple(s.value for s in ACTIVE_STATES)
        async with self._db.transaction() as conn:
            await conn.execute(
                "DELETE FROM uploads WHERE file_unique_id IN ("
                "SELECT person_unique_id FROM jobs WHERE user_id = ?1 UNION "
                "SELECT top_unique_id FROM jobs WHERE user_id = ?1 UNION "
                "SELECT bottom_unique_id FROM jobs WHERE user_id = ?1)",
                (user_id,),
            )
            await conn.execute(
                f"DELETE FROM jobs WHERE user_id = ? AND state NOT IN ({_marks(active)})",
                (user_id, *active),
            )
            await conn.execute(
                "UPDATE jobs SET forget_on_end = 1 "
                f"WHERE user_id = ? AND state IN ({_marks(active)})",
                (user_id, *active),
            )

    # ---- batches and past results (issue 12) -------------------------------------------

    async def batch(self, batch_id: str) -> list[Job]:
        """Every job of a batch, in the order its garments were sent."""
        rows = await self._db.fetchall(
            "SELECT * FROM jobs WHERE batch_id = ? ORDER BY batch_index", (batch_id,)
        )
        return [_row_to_job(row) for row in rows]

    async def set_result_file(self, job_id: str, file_id: str) -> None:
        await self._db.execute(
            "UPDATE jobs SET result_file_id = ?, updated_at = ? WHERE id = ?",
            (file_id, time.time(), job_id),
        )

    async def recent_results(
        self, user_id: int, chat_id: int, since: float, limit: int = 10
    ) -> list[Job]:
        """The user's try-ons in a chat whose result Telegram accepted (its file id is
        kept then), made since `since`, newest first."""
        rows = await self._db.fetchall(
            "SELECT * FROM jobs WHERE user_id = ? AND chat_id = ? "
            "AND result_file_id IS NOT NULL AND created_at >= ? "
            "ORDER BY created_at DESC, batch_index DESC LIMIT ?",
            (user_id, chat_id, since, limit),
        )
        return [_row_to_job(row) for row in rows]


async def _end_flow(conn: aiosqlite.Connection, flow: FlowEnd) -> None:
    await conn.execute(
        "DELETE FROM conversations WHERE name = ? AND key = ?",
        (flow.conversation, flow.conversation_key),
    )
    async with conn.execute(
        "SELECT data FROM user_data WHERE user_id = ?", (flow.user_id,)
    ) as cursor:
        row = await cursor.fetchone()
    if row is None:
        return
    data = json.loads(row[0])
    flows = data.get(flow.flows_key)
    if not isinstance(flows, dict) or flow.flow_key not in flows:
        return
    del flows[flow.flow_key]
    if not flows:
        del data[flow.flows_key]
    if data:
        await conn.execute(
            "UPDATE user_data SET data = ? WHERE user_id = ?",
            (json.dumps(data, separators=(",", ":")), flow.user_id),
        )
    else:
        await conn.execute("DELETE FROM user_data WHERE user_id = ?", (flow.user_id,))
