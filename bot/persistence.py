"""PTB persistence stored in the bot's SQLite database (conversations and user data).

Values are JSON, not pickles: user data holds only plain dicts, lists, strings and
numbers, and a JSON row can be read (and repaired) by an operator.
"""

from __future__ import annotations

import json
from typing import Any

from telegram.ext import BasePersistence, PersistenceInput

from handlers.ptb_internals import ConversationDict, ConversationKey
from services.storage.database import Database

UserData = dict[str, Any]


class SQLitePersistence(BasePersistence[UserData, dict[Any, Any], dict[Any, Any]]):
    def __init__(self, db: Database, update_interval: float = 5.0) -> None:
        super().__init__(
            store_data=PersistenceInput(
                bot_data=False, chat_data=False, user_data=True, callback_data=False
            ),
            update_interval=update_interval,
        )
        self._db = db

    async def get_user_data(self) -> dict[int, UserData]:
        rows = await self._db.fetchall("SELECT user_id, data FROM user_data")
        return {int(row["user_id"]): json.loads(row["data"]) for row in rows}

    async def update_user_data(self, user_id: int, data: UserData) -> None:
        if not data:
            await self.drop_user_data(user_id)
            return
        await self._db.execute(
            "INSERT INTO user_data (user_id, data) VALUES (?, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET data = excluded.data",
            (user_id, json.dumps(data, separators=(",", ":"))),
        )

    async def drop_user_data(self, user_id: int) -> None:
        await self._db.execute("DELETE FROM user_data WHERE user_id = ?", (user_id,))

    async def refresh_user_data(self, user_id: int, user_data: UserData) -> None:
        """Nothing to do: this process is the only writer."""

    async def get_conversations(self, name: str) -> ConversationDict:
        rows = await self._db.fetchall(
            "SELECT key, state FROM conversations WHERE name = ?", (name,)
        )
        return {tuple(json.loads(row["key"])): json.loads(row["state"]) for row in rows}

    async def update_conversation(
        self, name: str, key: ConversationKey, new_state: object | None
    ) -> None:
        key_json = json.dumps(list(key))
        if new_state is None:
            await self._db.execute(
                "DELETE FROM conversations WHERE name = ? AND key = ?", (name, key_json)
            )
            return
        await self._db.execute(
            "INSERT INTO conversations (name, key, state) VALUES (?, ?, ?) "
            "ON CONFLICT (name, key) DO UPDATE SET state = excluded.state",
            (name, key_json, json.dumps(new_state)),
        )

    # Chat data, bot data and callback data are not used by this bot.
    async def get_chat_data(self) -> dict[int, dict[Any, Any]]:
        return {}

    async def update_chat_data(self, chat_id: int, data: dict[Any, Any]) -> None:
        pass

    async def drop_chat_data(self, chat_id: int) -> None:
        pass

    async def refresh_chat_data(self, chat_id: int, chat_data: dict[Any, Any]) -> None:
        pass

    async def get_bot_data(self) -> dict[Any, Any]:
        return {}

    async def update_bot_data(self, data: dict[Any, Any]) -> None:
        pass

    async def refresh_bot_data(self, bot_data: dict[Any, Any]) -> None:
        pass

    async def get_callback_data(self) -> None:
        return None

    async def update_callback_data(self, data: Any) -> None:
        pass

    async def flush(self) -> None:
        """Every write above is already committed."""
