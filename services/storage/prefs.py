"""Per-user preferences: the language chosen with /language (wins over the app's)."""

from __future__ import annotations

from services.storage.database import Database


class PrefsStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def languages(self) -> dict[int, str]:
        """Every stored choice (one short row per user who chose), read once at start."""
        rows = await self._db.fetchall("SELECT user_id, language FROM user_prefs")
        return {int(row["user_id"]): str(row["language"]) for row in rows}

    async def set_language(self, user_id: int, language: str) -> None:
        await self._db.execute(
            "INSERT INTO user_prefs (user_id, language) VALUES (?, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET language = excluded.language",
            (user_id, language),
        )

    async def forget(self, user_id: int) -> bool:
        return await self._db.execute("DELETE FROM user_prefs WHERE user_id = ?", (user_id,)) > 0
