import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiosqlite
import pytest

from bot.persistence import SQLitePersistence
from services.model import InputImage, Job, JobState, new_job_id, utc_day
from services.storage.database import MIGRATIONS, Database
from services.storage.jobs import JobStore
from services.storage.profiles import ProfileStore
from services.storage.uploads import UploadCache
from services.tryon.quota import QuotaPolicy


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
