"""Every use of python-telegram-bot internals, in one place.

PTB offers no public API to move or drop a conversation key (group migration and
/forget need both).
tests/test_ptb_internals.py fails loudly if an upgrade changes what is used here.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from telegram.ext import Application, ConversationHandler
from telegram.ext._utils.types import ConversationDict, ConversationKey

__all__ = [
    "ConversationDict",
    "ConversationKey",
    "conversation_tables",
    "forget_conversations",
    "move_conversations",
]


def conversation_tables(
    app: Application,  # type: ignore[type-arg]
) -> list[MutableMapping[ConversationKey, object]]:
    """The state tables of the app's ConversationHandlers, keyed (chat, user).

    Writes go through PTB's tracking dict, so they are persisted.
    """
    return [
        handler._conversations
        for handlers in app.handlers.values()
        for handler in handlers
        if isinstance(handler, ConversationHandler)
    ]


def forget_conversations(
    app: Application,  # type: ignore[type-arg]
    user_id: int,
    chat_id: int | None = None,
) -> None:
    """Drops the user's conversation states (in one chat, or everywhere)."""
    for conversations in conversation_tables(app):
        for key in [
            k
            for k in conversations
            if len(k) == 2 and k[1] == user_id and (chat_id is None or k[0] == chat_id)
        ]:
            del conversations[key]


def move_conversations(
    app: Application,  # type: ignore[type-arg]
    old_chat_id: int,
    new_chat_id: int,
) -> dict[int, object]:
    """Moves every flow of a chat to its new id; returns each member's state."""
    states: dict[int, object] = {}
    for conversations in conversation_tables(app):
        for key in [k for k in conversations if k and k[0] == old_chat_id]:
            conversations[(new_chat_id, *key[1:])] = conversations.pop(key)
            if len(key) == 2:
                states[int(key[1])] = conversations[(new_chat_id, *key[1:])]
    return states
