import asyncio
import contextlib
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from bot.persistence import SQLitePersistence
from services.model import InputImage, Job, JobState, new_job_id, utc_day
from services.storage.backup import BackupError, backup_database
from services.storage.database import MIGRATIONS, Database
from services.storage.jobs import FINAL_STATES, JobStore
from services.storage.ledger import TOTAL_KEY, LedgerCounts
from services.storage.prefs import PrefsStore
from services.storage.profiles import ProfileStore
from services.storage.retention import Pruned, Retention, run_forever
from services.storage.uploads import UploadCache
from services.tryon.quota import QuotaPolicy
from tests.harness import ROOT


@pytest.fixture
async def open_db(tmp_path: Path) -> AsyncIterator[Callable[[], Database]]:
    """Opens databases on one file and closes every one of them after the test."""
    opened: list[Database] = []

    def make() -> Database:
        opened.append(Database(tmp_path / "bot.sqlite3"))
        return opened[-1]

    yield make
    for db in opened:
        await db.close()


def job(user_id: int = 7, **kw: object) -> Job:
    fields: dict[str, object] = {
        "id": new_job_id(),
        "chat_id": 7,
        "user_id": user_id,
        "lang": "en",
        "model": "aitryon-plus",
        "person": InputImage("p-file", "p-uniq", 1234),
        "top": InputImage("t-file", "t-uniq"),
    }
    fields.update(kw)
    return Job(**fields)  # type: ignore[arg-type]


async def test_schema_is_created_and_versioned(tmp_path: Path) -> None:
    db = Database(tmp_path / "x" / "bot.sqlite3")
    await db.open()
    await db.close()
    async with (
        aiosqlite.connect(tmp_path / "x" / "bot.sqlite3") as conn,
        conn.execute("PRAGMA user_version") as cur,
    ):
        assert (await cur.fetchone()) == (len(MIGRATIONS),)
    again = Database(tmp_path / "x" / "bot.sqlite3")  # reopening migrates nothing twice
    await again.open()
    await again.close()


async def test_job_round_trip_and_state_changes_survive_reopen(
    open_db: Callable[[], Database],
) -> None:
    db = open_db()
    store = JobStore(db)
    created = await store.create(job(thread_id=5, request_message_id=9, status_message_id=10))
    created = await store.set_uploaded(created, "person", "oss://a", time.time() + 100)
    created = await store.update(created, state=JobState.RUNNING, task_id="t-1", submitted_at=1.0)
    await db.close()
    store = JobStore(open_db())
    loaded = await store.get(created.id)
    assert loaded is not None
    assert loaded.state is JobState.RUNNING and loaded.task_id == "t-1"
    assert loaded.person.url == "oss://a" and loaded.top is not None and loaded.top.url is None
    assert loaded.bottom is None and loaded.thread_id == 5 and loaded.status_message_id == 10
    assert [j.id for j in await store.active()] == [created.id]


async def test_upload_cache_respects_expiry(open_db: Callable[[], Database]) -> None:
    uploads = UploadCache(open_db())
    await uploads.remember("aitryon-plus", "u1", "oss://k", expires_at=1000.0)
    assert await uploads.get("aitryon-plus", "u1", valid_after=999.0) == ("oss://k", 1000.0)
    assert await uploads.get("aitryon-plus", "u1", valid_after=1000.0) is None
    assert await uploads.get("aitryon", "u1", valid_after=0.0) is None  # bound to the model


async def test_quota_counts_billable_jobs_of_today(open_db: Callable[[], Database]) -> None:
    store = JobStore(open_db())
    now = time.time()
    policy = QuotaPolicy(
        store, user_daily_limit=2, daily_budget=3, allowed_chats=frozenset(), clock=lambda: now
    )
    await store.create(job(user_id=1, state=JobState.DELIVERED))
    await store.create(job(user_id=1, state=JobState.FAILED))  # failures are not billed
    await store.create(job(user_id=1, state=JobState.DELIVERED, created_at=now - 86400 * 2))
    assert await policy.check(1) is None
    await store.create(job(user_id=1, state=JobState.RUNNING))
    refusal = await policy.check(1)
    assert refusal is not None and refusal.reason == "daily_limit"
    assert 0 < refusal.resets_in <= 86400
    await store.create(job(user_id=2, state=JobState.QUEUED))
    refusal = await policy.check(3)
    assert refusal is not None and refusal.reason == "budget"
    tomorrow = QuotaPolicy(
        store,
        user_daily_limit=2,
        daily_budget=3,
        allowed_chats=frozenset(),
        clock=lambda: now + 86400,
    )
    assert await tomorrow.check(1) is None  # the counts reset with the UTC day
    assert utc_day(now) != utc_day(now + 86400)


def test_allowlist_accepts_user_or_chat(tmp_path: Path) -> None:
    store = JobStore(Database(tmp_path / "unused.sqlite3"))  # never opened: no quota checks here
    policy = QuotaPolicy(
        store, user_daily_limit=0, daily_budget=0, allowed_chats=frozenset({5, -100})
    )
    assert policy.allowed(chat_id=5, user_id=5)
    assert policy.allowed(chat_id=-100, user_id=9)
    assert not policy.allowed(chat_id=9, user_id=9)
    open_policy = QuotaPolicy(store, user_daily_limit=0, daily_budget=0, allowed_chats=frozenset())
    assert open_policy.allowed(1, 1)


async def test_persistence_round_trip(open_db: Callable[[], Database]) -> None:
    db = open_db()
    persistence = SQLitePersistence(db)
    await persistence.update_conversation("tryon", (-100, 7), "top")
    await persistence.update_conversation("tryon", (8, 8), "person")
    await persistence.update_conversation("tryon", (8, 8), None)
    await persistence.update_user_data(7, {"flows": {"-100": {"lang": "zh"}}})
    await db.close()
    again = SQLitePersistence(open_db())
    assert await again.get_conversations("tryon") == {(-100, 7): "top"}
    assert await again.get_user_data() == {7: {"flows": {"-100": {"lang": "zh"}}}}
    await again.update_user_data(7, {})
    assert await again.get_user_data() == {}


async def test_forget_user_keeps_running_jobs(open_db: Callable[[], Database]) -> None:
    db = open_db()
    store, profiles = JobStore(db), ProfileStore(db)
    done = await store.create(job(user_id=4, state=JobState.DELIVERED))
    running = await store.create(job(user_id=4, state=JobState.RUNNING))
    await profiles.save(4, InputImage("f", "u"))
    await store.forget_user(4)
    await profiles.delete(4)
    assert await store.get(done.id) is None
    assert await store.get(running.id) is not None
    assert await profiles.get(4) is None


async def test_language_choice_is_stored_replaced_and_forgotten(
    open_db: Callable[[], Database],
) -> None:
    prefs = PrefsStore(open_db())
    await prefs.set_language(5, "ru")
    await prefs.set_language(6, "ar")
    await prefs.set_language(5, "fa")
    assert await prefs.languages() == {5: "fa", 6: "ar"}
    assert await prefs.forget(5)
    assert not await prefs.forget(5)
    assert await prefs.languages() == {6: "ar"}


# ---- the quota ledger ---------------------------------------------------------------------


async def ledger_rows(db: Database) -> list[tuple[Any, ...]]:
    rows = await db.fetchall("SELECT * FROM quota_ledger ORDER BY day, user_key")
    return [tuple(row) for row in rows]


async def test_ledger_counts_accepted_and_billed_in_the_state_change(
    open_db: Callable[[], Database],
) -> None:
    db = open_db()
    store = JobStore(db)
    day = utc_day(time.time())
    queued = await store.create(job(user_id=1))
    assert await store.count_used(day, 1) == 1  # admitted: counts before DashScope sees it
    submitting = await store.update(queued, state=JobState.SUBMITTING, submit_intent_at=1.0)
    assert await store.count_used(day, 1) == 1
    assert await store.ledger_counts(day, 1) == LedgerCounts()
    running = await store.update(submitting, state=JobState.RUNNING, task_id="t-1")
    assert await store.ledger_counts(day, 1) == LedgerCounts(accepted=1)
    assert await store.count_used(day, 1) == 1  # now the ledger's, not the row's
    running = await store.update(running, task_status="RUNNING")
    running = await store.update(running, task_id="t-1")  # written again: counted once
    succeeded = await store.update(running, state=JobState.SUCCEEDED, result_url="https://r")
    await store.update(succeeded, state=JobState.DELIVERED)
    assert await store.ledger_counts(day, 1) == LedgerCounts(accepted=1, billed=1)
    assert await store.ledger_counts(day) == LedgerCounts(accepted=1, billed=1)
    assert await store.count_used(day, 1) == 1 and await store.count_used(day, 2) == 0


async def test_failed_before_acceptance_or_failed_at_dashscope_is_given_back(
    open_db: Callable[[], Database],
) -> None:
    store = JobStore(open_db())
    day = utc_day(time.time())
    refused = await store.create(job(user_id=1))
    refused = await store.update(refused, state=JobState.SUBMITTING)
    refused = await store.update(refused, state=JobState.QUEUED)  # DashScope said no
    await store.update(refused, state=JobState.FAILED, error_kind="invalid_person")
    interrupted = await store.create(job(user_id=1, state=JobState.SUBMITTING))
    await store.update(interrupted, state=JobState.INTERRUPTED)
    failed = await store.create(job(user_id=1))
    failed = await store.update(failed, state=JobState.RUNNING, task_id="t-2")
    failed = await store.update(failed, task_status="FAILED")  # DashScope does not bill it
    await store.update(failed, state=JobState.FAILED)
    assert await store.ledger_counts(day, 1) == LedgerCounts(accepted=1, unbilled=1)
    assert await store.count_used(day, 1) == 0


async def test_billed_but_undelivered_still_counts(open_db: Callable[[], Database]) -> None:
    store = JobStore(open_db())
    day = utc_day(time.time())
    lost = await store.create(job(user_id=1))
    lost = await store.update(lost, state=JobState.RUNNING, task_id="t-3")
    lost = await store.update(lost, task_status="SUCCEEDED")
    lost = await store.update(lost, state=JobState.SUCCEEDED, result_url="https://r")
    lost = await store.update(lost, state=JobState.FAILING, error_kind="undeliverable")
    await store.update(lost, state=JobState.FAILED)
    assert await store.ledger_counts(day, 1) == LedgerCounts(accepted=1, billed=1)
    assert await store.count_used(day, 1) == 1
    # A task that timed out here (its outcome at DashScope unknown) counts too.
    slow = await store.create(job(user_id=1))
    slow = await store.update(slow, state=JobState.RUNNING, task_id="t-4")
    await store.update(slow, state=JobState.FAILED, error_kind="timeout")
    assert await store.count_used(day, 1) == 2


async def test_forget_keeps_the_counts_and_the_ledger_holds_no_user_id(
    open_db: Callable[[], Database],
) -> None:
    db = open_db()
    store = JobStore(db)
    now = time.time()
    policy = QuotaPolicy(
        store, user_daily_limit=1, daily_budget=2, allowed_chats=frozenset(), clock=lambda: now
    )
    user_id = 987654321
    delivered = await store.create(job(user_id=user_id, state=JobState.QUEUED))
    delivered = await store.update(delivered, state=JobState.RUNNING, task_id="t-5")
    await store.update(delivered, state=JobState.DELIVERED)
    yesterday = await store.create(job(user_id=user_id, created_at=now - 86400))
    await store.update(yesterday, state=JobState.DELIVERED, task_id="t-6")
    await store.forget_user(user_id)
    assert await store.get(delivered.id) is None
    refusal = await policy.check(user_id)
    assert refusal is not None and refusal.reason == "daily_limit"
    other = await store.create(job(user_id=5, state=JobState.DELIVERED))
    assert other.user_id == 5
    refusal = await policy.check(6)
    assert refusal is not None and refusal.reason == "budget"  # Ann's forgotten one counts
    rows = await ledger_rows(db)
    assert len(rows) == 3
    columns = [row[1] for row in await db.fetchall("PRAGMA table_info(quota_ledger)")]
    assert columns == ["day", "user_key", "accepted", "billed", "unbilled"]
    for day, key, *_counts in rows:
        assert str(user_id) not in key and len(key) == 64 and int(key, 16) >= 0
        assert day in (utc_day(now), utc_day(now - 86400))
    keys = {key for _day, key, *_ in rows}
    assert len(keys) == 3  # the same user on two days: two unrelated keys
    salt = await db.fetchone("SELECT value FROM meta WHERE key = 'ledger_salt'")
    assert salt is not None and len(salt[0]) == 64


async def test_salt_survives_a_restart(open_db: Callable[[], Database]) -> None:
    db = open_db()
    store = JobStore(db)
    day = utc_day(time.time())
    await store.create(job(user_id=3, state=JobState.DELIVERED))
    await db.close()
    again = JobStore(open_db())
    assert await again.count_used(day, 3) == 1


async def test_forget_during_a_running_job_deletes_it_when_it_ends(
    open_db: Callable[[], Database],
) -> None:
    db = open_db()
    store, uploads = JobStore(db), UploadCache(db)
    day = utc_day(time.time())
    await uploads.remember("aitryon-plus", "p-uniq", "oss://p", time.time() + 100)
    await uploads.remember("aitryon-plus", "other", "oss://o", time.time() + 100)
    queued = await store.create(job(user_id=4))
    running = await store.create(job(user_id=4))
    running = await store.update(running, state=JobState.RUNNING, task_id="t-7")
    other = await store.create(job(user_id=8, state=JobState.DELIVERED, task_id="t-8"))
    await store.forget_user(4)
    assert await uploads.get("aitryon-plus", "p-uniq", 0.0) is None  # her images' uploads
    assert await uploads.get("aitryon-plus", "other", 0.0) is not None
    assert await store.get(running.id) is not None  # the pipeline still needs it
    running = await store.update(running, state=JobState.SUCCEEDED, result_url="https://r")
    assert await store.get(running.id) is not None
    await uploads.remember("aitryon-plus", "t-uniq", "oss://t", time.time() + 100)  # re-used
    await store.update(running, state=JobState.DELIVERED, delivered_at=2.0)
    assert await store.get(running.id) is None
    assert await uploads.get("aitryon-plus", "t-uniq", 0.0) is None
    # The queued one submits later: it is counted, and deleted once it fails.
    assert await store.count_used(day, 4) == 2
    queued = await store.update(queued, state=JobState.RUNNING, task_id="t-9")
    await store.update(queued, state=JobState.FAILED, error_kind="timeout")
    assert await store.get(queued.id) is None
    assert await store.count_used(day, 4) == 2
    assert await store.get(other.id) is not None


async def test_upgrade_from_version_1_fills_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    now = time.time()
    async with aiosqlite.connect(path) as conn:
        await conn.executescript(f"BEGIN; {MIGRATIONS[0]}; PRAGMA user_version = 1; COMMIT;")
        for state, task_id in (("delivered", "t-1"), ("running", "t-2"), ("failed", None)):
            await conn.execute(
                "INSERT INTO jobs (id, chat_id, user_id, lang, model, person_file_id, "
                "person_unique_id, state, task_id, day, created_at, updated_at) "
                "VALUES (?, 1, 1, 'en', 'aitryon-plus', 'f', 'u', ?, ?, ?, ?, ?)",
                (new_job_id(), state, task_id, utc_day(now), now, now),
            )
        await conn.commit()
    db = Database(path)
    try:
        store = JobStore(db)
        assert await store.ledger_counts(utc_day(now), 1) == LedgerCounts(accepted=2, billed=1)
        assert await store.count_used(utc_day(now), 1) == 2
        await store.forget_user(1)
        assert await store.count_used(utc_day(now), 1) == 2
    finally:
        await db.close()


async def test_database_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        db = Database(tmp_path / "data" / "bot.sqlite3")
        await JobStore(db).create(job())
        files = sorted((tmp_path / "data").iterdir())
        assert [f.name for f in files] == ["bot.sqlite3", "bot.sqlite3-shm", "bot.sqlite3-wal"]
        for file in files:
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
        await db.close()
    finally:
        os.umask(old)
    loose = tmp_path / "loose.sqlite3"  # left world-readable by an older version
    loose.touch(mode=0o644)
    loose.chmod(0o644)
    db = Database(loose)
    await db.open()
    await db.close()
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600


# ---- retention ----------------------------------------------------------------------------


async def test_retention_prunes_old_jobs_uploads_and_ledger_rows(
    open_db: Callable[[], Database],
) -> None:
    db = open_db()
    store, uploads = JobStore(db), UploadCache(db)
    retention = Retention(db, retention_days=30)
    now = time.time()
    days = 86400.0
    old = await store.create(job(user_id=1, state=JobState.DELIVERED, task_id="a"))
    recent = await store.create(job(user_id=1, state=JobState.FAILED))
    stuck = await store.create(job(user_id=1, state=JobState.RUNNING, task_id="b"))
    await db.execute(
        "UPDATE jobs SET updated_at = ? WHERE id IN (?, ?)", (now - 31 * days, old.id, stuck.id)
    )
    await uploads.remember("aitryon-plus", "gone", "oss://g", now - 1)
    await uploads.remember("aitryon-plus", "kept", "oss://k", now + 100)
    for age, user_id in ((0, 1), (1, 1), (3, 1), (3, 2), (500, 3)):
        await store.create(
            job(user_id=user_id, state=JobState.DELIVERED, created_at=now - age * days)
        )
    before = {age: await store.ledger_counts(utc_day(now - age * days)) for age in (0, 1, 3)}

    pruned = await retention.prune(now)

    assert pruned.jobs == 2 and pruned.uploads == 1  # `old` and the one from 500 days ago
    assert await store.get(old.id) is None
    assert await store.get(recent.id) is not None and await store.get(stuck.id) is not None
    assert await uploads.get("aitryon-plus", "gone", 0.0) is None
    assert await uploads.get("aitryon-plus", "kept", 0.0) is not None
    after = {age: await store.ledger_counts(utc_day(now - age * days)) for age in (0, 1, 3)}
    assert after == before  # today's and yesterday's as they were; older days as totals
    assert await store.ledger_counts(utc_day(now - 3 * days), 1) == LedgerCounts()
    assert await store.count_used(utc_day(now), 1) == before[0].used
    keys = {(day, key) for day, key, *_ in await ledger_rows(db)}
    assert (utc_day(now - 3 * days), TOTAL_KEY) in keys
    assert not any(day == utc_day(now - 500 * days) for day, _ in keys)
    assert sum(key != TOTAL_KEY for _day, key in keys) == 2  # today's and yesterday's
    assert not await retention.prune(now)  # nothing more to do


async def test_retention_loop_survives_errors_and_stops_when_cancelled(
    open_db: Callable[[], Database], caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[float] = []
    third = asyncio.Event()

    class Flaky(Retention):
        async def prune(self, now: float) -> Pruned:
            calls.append(now)
            if len(calls) == 3:
                third.set()
            if len(calls) == 1:
                raise RuntimeError("disk hiccup")
            return await super().prune(now)

    loop = asyncio.create_task(
        run_forever(Flaky(open_db(), retention_days=30), interval=0.01, clock=lambda: 5.0)
    )
    await asyncio.wait_for(third.wait(), timeout=5)
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    assert "disk hiccup" in caplog.text and "pruning failed" in caplog.text


# ---- backups ------------------------------------------------------------------------------


async def test_backup_of_a_live_database(open_db: Callable[[], Database], tmp_path: Path) -> None:
    db = open_db()  # the bot's connection stays open (WAL) during the backup
    store = JobStore(db)
    created = [await store.create(job(user_id=i, state=JobState.DELIVERED)) for i in range(5)]
    target = tmp_path / "copies" / "backup.sqlite3"
    target.parent.mkdir()
    writer = asyncio.create_task(write_more(store))
    result = await asyncio.to_thread(backup_database, db.path, target)
    await writer
    assert result.target == target and result.size > 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with contextlib.closing(sqlite3.connect(target)) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        ids = {row[0] for row in copy.execute("SELECT id FROM jobs")}
        assert {j.id for j in created} <= ids
        assert copy.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
        assert copy.execute("SELECT COUNT(*) FROM quota_ledger").fetchone()[0] >= 5
    with pytest.raises(BackupError, match="already exists"):
        backup_database(db.path, target)
    backup_database(db.path, target, force=True)
    with pytest.raises(BackupError, match="no database"):
        backup_database(tmp_path / "missing.sqlite3", tmp_path / "x.sqlite3")
    assert sorted(p.name for p in target.parent.iterdir()) == ["backup.sqlite3"]


async def write_more(store: JobStore) -> None:
    for i in range(20):
        await store.create(job(user_id=100 + i, state=JobState.DELIVERED))


def test_backup_command_prints_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with contextlib.closing(sqlite3.connect(data / "tryon.sqlite3")) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (42)")
        conn.commit()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRYON_", "TELEGRAM_"))}
        env |= {"TRYON_DATA_DIR": str(data), "PYTHONPATH": str(ROOT)}

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "bot", *args],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )

        done = run("backup", "copy.sqlite3")
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("\n") == 1 and "copy.sqlite3" in done.stdout
        with contextlib.closing(sqlite3.connect(tmp_path / "copy.sqlite3")) as copy:
            assert copy.execute("SELECT x FROM t").fetchall() == [(42,)]
        refused = run("backup", "copy.sqlite3")
        assert refused.returncode == 1 and refused.stdout == ""
        assert refused.stderr.count("\n") == 1 and "--force" in refused.stderr
        assert run("backup", "copy.sqlite3", "--force").returncode == 0
        usage = run("backup")
        assert usage.returncode == 2 and usage.stderr.count("\n") == 1
        assert "Traceback" not in usage.stderr + refused.stderr


async def test_the_forget_trigger_knows_the_final_states(open_db: Callable[[], Database]) -> None:
    db = open_db()
    row = await db.fetchone("SELECT sql FROM sqlite_master WHERE name = 'jobs_forget_on_end'")
    assert row is not None
    listed = set(re.findall(r"'(\w+)'", row[0]))
    assert listed == {s.value for s in FINAL_STATES}


async def test_a_job_and_the_end_of_its_flow_are_one_transaction(
    open_db: Callable[[], Database],
) -> None:
    """The handler's `flow_end` keys, written by the real PTB persistence."""
    from handlers.drafts import CONVERSATION, flow_end

    db = open_db()
    persistence = SQLitePersistence(db)
    await persistence.update_conversation(CONVERSATION, (7, 7), "bottom")
    await persistence.update_conversation(CONVERSATION, (8, 7), "top")  # another chat
    await persistence.update_user_data(7, {"flows": {"7": {"lang": "en"}, "8": {}}, "x": 1})
    store = JobStore(db)
    first = job()
    await store.create(first, flow_end(7, 7))
    assert await persistence.get_conversations(CONVERSATION) == {(8, 7): "top"}
    assert (await persistence.get_user_data())[7] == {"flows": {"8": {}}, "x": 1}
    # A failed insert changes nothing: the flow stays open, no job exists.
    await persistence.update_conversation(CONVERSATION, (8, 7), "top")
    with pytest.raises(aiosqlite.IntegrityError):
        await store.create(job(id=first.id, chat_id=8), flow_end(8, 7))
    assert await persistence.get_conversations(CONVERSATION) == {(8, 7): "top"}
    assert (await persistence.get_user_data())[7] == {"flows": {"8": {}}, "x": 1}
    # The last flow gone and nothing else kept: the user_data row goes too.
    await persistence.update_user_data(9, {"flows": {"9": {}}})
    await store.create(job(user_id=9, chat_id=9), flow_end(9, 9))
    assert 9 not in await persistence.get_user_data()
