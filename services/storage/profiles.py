"""Saved person photos (/me): a user's own photo, so /tryon can skip the person step."""

from __future__ import annotations

import time

from services.model import InputImage
from services.storage.database import Database


class ProfileStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, user_id: int) -> InputImage | None:
        row = await self._db.fetchone(
            "SELECT file_id, unique_id, file_size FROM profiles WHERE user_id = ?", (user_id,)
        )
        if row is None:
            return None
        return InputImage(row["file_id"], row["unique_id"], row["file_size"])

    async def save(self, user_id: int, image: InputImage) -> None:
        await self._db.execute(
            "INSERT INTO profiles (user_id, file_id, unique_id, file_size, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET "
            "file_id = excluded.file_id, unique_id = excluded.unique_id, "
            "file_size = excluded.file_size, updated_at = excluded.updated_at",
            (user_id, image.file_id, image.unique_id, image.file_size, time.time()),
        )

    async def delete(self, user_id: int) -> bool:
        return await self._db.execute("DELETE FROM profiles WHERE user_id = ?", (user_id,)) > 0
