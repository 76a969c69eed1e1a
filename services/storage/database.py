"""The bot's one SQLite database: connection, pragmas and schema migrations."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

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
)


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
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = await aiosqlite.connect(self.path, isolation_level=None)
                conn.row_factory = aiosqlite.Row
                # WAL + NORMAL survives a killed process (only an OS crash may lose a commit).
                await conn.execute("PRAGMA journal_mode=WAL")
                await conn.execute("PRAGMA synchronous=NORMAL")
                await conn.execute("PRAGMA busy_timeout=5000")
                await _migrate(conn)
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


async def _migrate(conn: aiosqlite.Connection) -> None:
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    version = int(row[0]) if row else 0
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        log.info("Migrating database schema to version %d", number)
        await conn.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
