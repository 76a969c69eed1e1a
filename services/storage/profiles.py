"""Saved person photos (/me): a user's own photo, so /tryon can skip the person step;
and the gender HD (aitryon-refiner) needs. A row with only a gender has an empty file_id."""

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
        if row is None or not row["file_id"]:
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
        """Forgets the user's whole profile (photo and gender)."""
        return await self._db.execute("DELETE FROM profiles WHERE user_id = ?", (user_id,)) > 0

    async def delete_photo(self, user_id: int) -> bool:
        """Removes the saved photo only (the gender stays)."""
        changed = await self._db.execute(
            "UPDATE profiles SET file_id = '', unique_id = '', file_size = NULL "
            "WHERE user_id = ? AND file_id != ''",
            (user_id,),
        )
        await self._db.execute(
            "DELETE FROM profiles WHERE user_id = ? AND file_id = '' AND gender IS NULL", (user_id,)
        )
        return changed > 0

    async def gender(self, user_id: int) -> str | None:
        row = await self._db.fetchone("SELECT gender FROM profiles WHERE user_id = ?", (user_id,))
        return str(row["gender"]) if row is not None and row["gender"] else None

    async def set_gender(self, user_id: int, gender: str) -> None:
        await self._db.execute(
            "INSERT INTO profiles (user_id, file_id, unique_id, file_size, updated_at, gender) "
            "VALUES (?, '', '', NULL, ?, ?) ON CONFLICT (user_id) DO UPDATE SET "
            "gender = excluded.gender, updated_at = excluded.updated_at",
            (user_id, time.time(), gender),
        )
