"""The upload cache: a Telegram file already uploaded for a model is not uploaded again."""

from __future__ import annotations

from services.storage.database import Database


class UploadCache:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, model: str, unique_id: str, valid_after: float) -> tuple[str, float] | None:
        row = await self._db.fetchone(
            "SELECT url, expires_at FROM uploads "
            "WHERE model = ? AND file_unique_id = ? AND expires_at > ?",
            (model, unique_id, valid_after),
        )
        return (str(row["url"]), float(row["expires_at"])) if row else None

    async def remember(self, model: str, unique_id: str, url: str, expires_at: float) -> None:
        await self._db.execute(
            "INSERT INTO uploads (model, file_unique_id, url, expires_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (model, file_unique_id) DO UPDATE SET url = excluded.url, "
            "expires_at = excluded.expires_at",
            (model, unique_id, url, expires_at),
        )

    async def prune(self, now: float) -> None:
        await self._db.execute("DELETE FROM uploads WHERE expires_at <= ?", (now,))
