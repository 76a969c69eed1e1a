"""The update processor: updates of different chats (and of different members of one
chat) are handled concurrently, while each (chat, user) pair's updates are handled one
at a time, in the order Telegram sent them.

That is the order the ConversationHandler needs (its key is the same (chat, user) pair),
so every conversation step can run as a plain blocking handler: a user's next message
waits for their previous step instead of racing it, and one slow chat (a flood wait, a
big photo) holds up nobody else. Updates without a user or chat run at once.

`waiting(chat_id, user_id)` lists the updates queued behind the pair's current one
(handlers/bursts.py uses it to notice a burst while its first photo is handled), and
`on_arrival(listener)` tells a listener of every update as it arrives, before it waits
for its turn (handlers/albums.py collects an album's items that way while its first item
is handled).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

Key = tuple[int | None, int | None]

# Updates PTB may hold at once (mostly queued behind their pair's current update); the
# ones actually running are bounded by `running`.
MAX_PENDING = 10_000
MAX_RUNNING = 64


def key_of(update: object) -> Key | None:
    if not isinstance(update, Update):
        return None
    chat, user = update.effective_chat, update.effective_user
    if chat is None and user is None:
        return None
    return (chat.id if chat else None, user.id if user else None)


class PerUserOrderedProcessor(BaseUpdateProcessor):
    def __init__(self, running: int = MAX_RUNNING, pending: int = MAX_PENDING) -> None:
        super().__init__(pending)
        self._running = asyncio.Semaphore(running)
        self._tails: dict[Key, asyncio.Future[None]] = {}
        self._waiting: dict[Key, list[object]] = {}
        self._arrival: list[Callable[[object], None]] = []

    def on_arrival(self, listener: Callable[[object], None]) -> None:
        """`listener(update)` for every update, as it arrives (before its turn)."""
        self._arrival.append(listener)

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to free: PTB awaits every update's task before it shuts down."""

    def waiting(self, chat_id: int | None, user_id: int | None) -> list[object]:
        """Updates of this (chat, user) received but not yet started, oldest first."""
        return list(self._waiting.get((chat_id, user_id), ()))

    def users(self) -> set[int]:
        """Users with an update running or queued."""
        return {user for _, user in self._tails if user is not None}

    def busy(self) -> int:
        """Updates received and not yet finished (running or queued)."""
        return self.current_concurrent_updates

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        for listener in self._arrival:
            listener(update)
        key = key_of(update)
        if key is None:
            async with self._running:
                await coroutine
            return
        # Registered before the first await: the order of arrival is the order of turns.
        previous = self._tails.get(key)
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[key] = turn
        waiting = self._waiting.setdefault(key, [])
        waiting.append(update)
        started = False
        try:
            if previous is not None:
                await asyncio.shield(previous)
            waiting.remove(update)
            started = True
            async with self._running:
                await coroutine
        finally:
            if not started:
                with contextlib.suppress(ValueError):
                    waiting.remove(update)
                if asyncio.iscoroutine(coroutine):
                    coroutine.close()  # canceled before its turn: never started
            if not waiting and self._waiting.get(key) is waiting:
                del self._waiting[key]
            if not turn.done():
                turn.set_result(None)
            if self._tails.get(key) is turn:
                del self._tails[key]
