"""Kept garments: what aitryon-parsing-v1 found on a person photo, reused while valid.

One row per (Telegram file, slot): the crop URL, or NULL when the person wears no garment
of that kind; `made_at` dates it (crop URLs last 24 h).
"""

from __future__ import annotations

from services.storage.database import Database


class CropStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(
        self, unique_id: str, slot: str, made_after: float
    ) -> tuple[str | None, float] | None:
        """(crop URL or None for "none found", when it was made), if made after `made_after`."""
        row = await self._db.fetchone(
            "SELECT url, made_at FROM crops WHERE file_unique_id = ? AND slot = ? AND made_at > ?",
            (unique_id, slot, made_after),
        )
        return (row["url"], float(row["made_at"])) if row else None

    async def remember(self, unique_id: str, slot: str, url: str | None, made_at: float) -> None:
        await self._db.execute(
            "INSERT INTO crops (file_unique_id, slot, url, made_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (file_unique_id, slot) DO UPDATE SET url = excluded.url, "
            "made_at = excluded.made_at",
            (unique_id, slot, url, made_at),
        )

    async def forget(self, unique_id: str) -> None:
        await self._db.execute("DELETE FROM crops WHERE file_unique_id = ?", (unique_id,))

    async def prune(self, before: float) -> None:
        await self._db.execute("DELETE FROM crops WHERE made_at <= ?", (before,))
