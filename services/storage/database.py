"""The bot's one SQLite database: connection, pragmas and schema migrations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from services.storage import ledger

log = logging.getLogger(__name__)

# Each entry upgrades the schema by one version (PRAGMA user_version). Append only.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE conversations (
        name TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL,
        PRIMARY KEY (name, key)
    );
    CREATE TABLE user_data (user_id INTEGER PRIMARY KEY, data TEXT NOT NULL);
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        chat_id INTEGER NOT NULL,
        thread_id INTEGER,
        user_id INTEGER NOT NULL,
        lang TEXT NOT NULL,
        request_message_id INTEGER,
        status_message_id INTEGER,
        model TEXT NOT NULL,
        person_file_id TEXT NOT NULL,
        person_unique_id TEXT NOT NULL,
        person_file_size INTEGER,
        person_url TEXT,
        top_file_id TEXT,
        top_unique_id TEXT,
        top_file_size INTEGER,
        top_url TEXT,
        bottom_file_id TEXT,
        bottom_unique_id TEXT,
        bottom_file_size INTEGER,
        bottom_url TEXT,
        uploads_expire_at REAL,
        state TEXT NOT NULL,
        task_id TEXT,
        task_status TEXT,
        result_url TEXT,
        error_kind TEXT,
        error_code TEXT,
        result_message_id INTEGER,
        day TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        submit_intent_at REAL,
        submitted_at REAL,
        finished_at REAL,
        delivered_at REAL
    );
    CREATE INDEX jobs_by_state ON jobs (state);
    CREATE INDEX jobs_by_user_day ON jobs (user_id, day);
    CREATE INDEX jobs_by_day ON jobs (day);
    CREATE TABLE uploads (
        model TEXT NOT NULL,
        file_unique_id TEXT NOT NULL,
        url TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (model, file_unique_id)
    );
    CREATE TABLE profiles (
        user_id INTEGER PRIMARY KEY,
        file_id TEXT NOT NULL,
        unique_id TEXT NOT NULL,
        file_size INTEGER,
        updated_at REAL NOT NULL
    );
    """,
    # 2: the language a user chose with /language (wins over their app's language).
    """
    CREATE TABLE user_prefs (user_id INTEGER PRIMARY KEY, language TEXT NOT NULL);
    """,
    # 3: the quota ledger (services/storage/ledger.py) and its salt; per-job flags saying
    # what the ledger already holds for the job, and /forget of a job still running.
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO meta (key, value) VALUES ('ledger_salt', lower(hex(randomblob(32))));
    CREATE TABLE quota_ledger (
        day TEXT NOT NULL,
        user_key TEXT NOT NULL,
        accepted INTEGER NOT NULL DEFAULT 0,
        billed INTEGER NOT NULL DEFAULT 0,
        unbilled INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (day, user_key)
    ) WITHOUT ROWID;
    ALTER TABLE jobs ADD COLUMN ledger_key TEXT;
    ALTER TABLE jobs ADD COLUMN ledger_accepted INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN ledger_billed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN ledger_unbilled INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN forget_on_end INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX jobs_by_updated ON jobs (updated_at);
    -- A job the user asked to forget while it ran goes (with its cached uploads) in the
    -- same statement that writes its final state.
    CREATE TRIGGER jobs_forget_on_end AFTER UPDATE OF state ON jobs
    WHEN NEW.forget_on_end = 1
        AND NEW.state IN ('delivered', 'failed', 'canceled', 'interrupted', 'retried')
    BEGIN
        DELETE FROM uploads WHERE file_unique_id IN
            (NEW.person_unique_id, NEW.top_unique_id, NEW.bottom_unique_id);
        DELETE FROM jobs WHERE id = NEW.id;
    END;
    """
    + ledger.TRIGGERS,
    # 4: keep my own garment (aitryon-parsing-v1), another take, HD (aitryon-refiner).
    """
    ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'tryon';
    ALTER TABLE jobs ADD COLUMN keep TEXT;
    ALTER TABLE jobs ADD COLUMN kept_url TEXT;
    ALTER TABLE jobs ADD COLUMN kept_at REAL;
    ALTER TABLE jobs ADD COLUMN refinable INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN coarse_url TEXT;
    ALTER TABLE jobs ADD COLUMN gender TEXT;
    ALTER TABLE jobs ADD COLUMN source_id TEXT;
    ALTER TABLE profiles ADD COLUMN gender TEXT;
    CREATE TABLE crops (
        file_unique_id TEXT NOT NULL,
        slot TEXT NOT NULL,
        url TEXT,
        made_at REAL NOT NULL,
        PRIMARY KEY (file_unique_id, slot)
    );
    """,
    # 5: batches (several garments with one person) and the delivered result's
    # Telegram file id (/history, compare).
    """
    ALTER TABLE jobs ADD COLUMN batch_id TEXT;
    ALTER TABLE jobs ADD COLUMN batch_index INTEGER;
    ALTER TABLE jobs ADD COLUMN batch_size INTEGER;
    ALTER TABLE jobs ADD COLUMN result_file_id TEXT;
    CREATE INDEX jobs_by_batch ON jobs (batch_id);
    CREATE INDEX jobs_by_user_delivered ON jobs (user_id, delivered_at);
    """,
)
LEDGER_VERSION = 3
FILE_MODE = 0o600  # the database holds user ids, file ids and signed result URLs


class Database:
    """One aiosqlite connection, opened on first use (PTB's persistence reads before
    post_init runs); writes are serialised by a lock and each one is atomic."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None
        self._open_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()

    async def open(self) -> aiosqlite.Connection:
        if self._conn is not None:
            return self._conn
        async with self._open_lock:
            if self._conn is None:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                _private_files(self.path)
                conn = await aiosqlite.connect(self.path, isolation_level=None)
                conn.row_factory = aiosqlite.Row
                # WAL + NORMAL survives a killed process (only an OS crash may lose a commit).
                await conn.execute("PRAGMA journal_mode=WAL")
                await conn.execute("PRAGMA synchronous=NORMAL")
                await conn.execute("PRAGMA busy_timeout=5000")
                await _migrate(conn)
                _private_files(self.path)  # the -wal and -shm files now exist
                self._conn = conn
        return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        conn = await self.open()
        async with self._write_lock:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Runs one write statement atomically; returns the number of rows changed."""
        conn = await self.open()
        async with self._write_lock:
            cursor = await conn.execute(sql, params)
            return cursor.rowcount

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        conn = await self.open()
        async with conn.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        conn = await self.open()
        async with conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())


def _private_files(path: Path) -> None:
    """Creates the database file 0600 before SQLite opens it (SQLite gives its -wal and
    -shm files the database file's mode), and tightens files an older version left open."""
    if not path.exists():
        with contextlib.suppress(OSError):  # e.g. a read-only directory: SQLite reports it
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, FILE_MODE))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if stat.S_IMODE(file.stat().st_mode) != FILE_MODE:
                file.chmod(FILE_MODE)
        except FileNotFoundError:
            pass
        except OSError as error:  # not ours to change: say so, and carry on
            log.warning("Could not make %s private (0600): %s", file, error)


async def _migrate(conn: aiosqlite.Connection) -> None:
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    version = int(row[0]) if row else 0
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        log.info("Migrating database schema to version %d", number)
        await conn.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
    if 0 < version < LEDGER_VERSION:
        # Jobs from before the ledger: give them their keys and record what they prove
        # (re-writing each state fires the ledger trigger), so today's counts hold.
        await conn.execute("BEGIN IMMEDIATE")
        try:
            salt = await ledger.load_salt(conn)
            async with conn.execute("SELECT id, day, user_id FROM jobs") as cursor:
                rows = list(await cursor.fetchall())
            await conn.executemany(
                "UPDATE jobs SET ledger_key = ? WHERE id = ?",
                [(ledger.user_key(salt, row[1], row[2]), row[0]) for row in rows],
            )
            await conn.execute("UPDATE jobs SET state = state")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
        log.info("Quota ledger filled from %d existing job(s)", len(rows))
