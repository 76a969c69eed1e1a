"""A consistent copy of the live database with SQLite's online backup API.

It works while the bot runs (WAL: the copy is one read transaction's snapshot and the bot
keeps writing meanwhile). The copy is written next to the target under a temporary
name, checked, and renamed into place, so a failed backup never leaves half a file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from services.storage.database import FILE_MODE


class BackupError(Exception):
    """A backup that could not be made; the message is one line."""


@dataclass(frozen=True)
class BackupResult:
    target: Path
    size: int  # bytes


def backup_database(source: Path, target: Path, *, force: bool = False) -> BackupResult:
    if not source.is_file():
        raise BackupError(f"no database at {source} (check TRYON_DATA_DIR)")
    if target.is_dir():
        raise BackupError(f"{target} is a directory; give a file name")
    if target.exists() and not force:
        raise BackupError(f"{target} already exists (use --force to overwrite it)")
    if target.exists() and target.resolve() == source.resolve():
        raise BackupError(f"{target} is the live database itself")
    if not target.parent.is_dir():
        raise BackupError(f"no directory {target.parent}")
    temporary = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE))
        _copy(source, temporary)
        os.replace(temporary, target)
    except (OSError, sqlite3.Error) as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise BackupError(f"backup failed: {error}") from None
    return BackupResult(target, target.stat().st_size)


def _copy(source: Path, target: Path) -> None:
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)  # all pages in one step: one consistent snapshot
            dst.execute("PRAGMA journal_mode=DELETE")  # a self-contained single file
            (verdict,) = dst.execute("PRAGMA integrity_check").fetchone()
            if verdict != "ok":
                raise sqlite3.DatabaseError(f"the copy fails its integrity check: {verdict}")
        finally:
            dst.close()
    finally:
        src.close()
