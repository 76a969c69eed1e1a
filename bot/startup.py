"""Start-up checks that run before anything else touches the data dir or the network.

Each failure is one line (StartupError) that names the path or setting and says what to
do; nothing here deletes, overwrites or migrates data.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from services.storage.database import MIGRATIONS

LOCK_NAME = "tryon.lock"


TOKEN_REJECTED = (
    "Telegram rejected TELEGRAM_BOT_TOKEN (Unauthorized): copy the token again from "
    "@BotFather (/mybots → API Token)"
)


class StartupError(Exception):
    """A start-up check failed; the message is one line with the fix."""


def process_user() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "?"
    return f"{name} (uid {os.getuid()})"


def owner_of(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return "?"
    return f"uid {st.st_uid}, mode {st.st_mode & 0o777:o}"


def _writable(directory: Path) -> bool:
    """Really writable (os.access is not enough: root, read-only mounts, immutable dirs)."""
    probe = directory / f".write-test-{os.getpid()}"
    try:
        with probe.open("wb") as handle:
            handle.write(b"ok")
    except OSError:
        return False
    with contextlib.suppress(OSError):
        probe.unlink()
    return True


def check_data_dir(data_dir: Path) -> str | None:
    """Creates the data dir when missing (its parent must exist); returns a note if it did."""
    path = data_dir.absolute()
    if path.exists() and not path.is_dir():
        raise StartupError(
            f"TRYON_DATA_DIR {path} is not a directory: point TRYON_DATA_DIR at a directory"
        )
    note = None
    if not path.exists():
        try:
            path.mkdir(mode=0o700, parents=True)
        except OSError as error:
            raise StartupError(
                f"TRYON_DATA_DIR {path} does not exist and cannot be created "
                f"({error.strerror}) as user {process_user()}: create it and give that user "
                f"write access"
            ) from None
        note = f"Created the data dir {path}"
    if not _writable(path):
        raise StartupError(
            f"TRYON_DATA_DIR {path} is not writable by user {process_user()} "
            f"(owner {owner_of(path)}): e.g. `chown {os.getuid()} {path}`"
        )
    return note


@dataclass
class LockHolder:
    pid: int | None
    host: str
    since: str

    def describe(self) -> str:
        pid = f"pid {self.pid}" if self.pid else "an unknown process"
        return f"{pid} on {self.host or '?'}" + (f", since {self.since}" if self.since else "")


class InstanceLock:
    """An OS lock (flock) on TRYON_DATA_DIR/tryon.lock, held for the process's lifetime.

    The kernel drops it when the process dies, however it dies, so there is no stale lock.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_holder(self.path)
            raise StartupError(
                f"another instance is using {self.path.parent.absolute()} "
                f"({holder.describe()}): stop it first, or give this one its own TRYON_DATA_DIR"
            ) from None
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.write(fd, f"pid={os.getpid()}\nhost={socket.gethostname()}\nsince={stamp}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_holder(path: Path) -> LockHolder:
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text("utf-8", errors="replace").splitlines():
            key, _, value = line.partition("=")
            fields[key.strip()] = value.strip()
    pid = fields.get("pid", "")
    return LockHolder(
        int(pid) if pid.isdigit() else None, fields.get("host", ""), fields.get("since", "")
    )


def lock_state(data_dir: Path) -> str | None:
    """None when the lock is free; otherwise who holds it. Never keeps the lock."""
    path = data_dir / LOCK_NAME
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_holder(path).describe()
    finally:
        os.close(fd)  # closing releases a lock this call took
    return None


@dataclass
class DatabaseState:
    exists: bool
    schema_version: int = 0


def check_database(path: Path) -> DatabaseState:
    """Integrity, schema version and writability, read-only: the file is never changed."""
    if not path.exists():
        return DatabaseState(exists=False)
    where = path.absolute()
    if not path.is_file():
        raise StartupError(f"the database {where} is not a file: move it away and restart")
    try:
        conn = sqlite3.connect(f"file:{where}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as error:
        raise StartupError(f"the database {where} cannot be opened ({error})") from None
    try:
        problem = conn.execute("PRAGMA quick_check").fetchone()[0]
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as error:
        problem = str(error)
        version = 0
    finally:
        conn.close()
    if problem != "ok":
        raise StartupError(
            f"the database {where} is damaged ({problem}); it was left untouched. Stop the bot, "
            f"keep a copy, then try `sqlite3 {where} .recover > recovered.sql`, or move it "
            f"away to start with an empty one"
        )
    if version > len(MIGRATIONS):
        raise StartupError(
            f"the database {where} has schema version {version}, newer than this version of "
            f"the bot knows ({len(MIGRATIONS)}): run the newer version, or restore a backup"
        )
    if not _file_writable(where):
        raise StartupError(
            f"the database {where} is read-only for user {process_user()} "
            f"(owner {owner_of(where)}): e.g. `chown {os.getuid()} {where}` or `chmod u+w {where}`"
        )
    return DatabaseState(exists=True, schema_version=version)


def _file_writable(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True
