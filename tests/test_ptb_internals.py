"""Fails loudly if a python-telegram-bot upgrade changes the internals the bot relies on
(handlers/ptb_internals.py): the conversation tables."""

from __future__ import annotations

import warnings
from typing import Any

import telegram
from telegram.ext import Application, ConversationHandler, MessageHandler, filters
from telegram.warnings import PTBUserWarning

from handlers.ptb_internals import (
    conversation_tables,
    forget_conversations,
    move_conversations,
)
from tests.harness import TOKEN


def app_with_conversation() -> tuple[Application, ConversationHandler[Any]]:  # type: ignore[type-arg]
    async def noop(*_: object) -> None:
        return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBUserWarning)
        conversation: ConversationHandler[Any] = ConversationHandler(
            entry_points=[MessageHandler(filters.ALL, noop)], states={}, fallbacks=[]
        )
    app = Application.builder().token(TOKEN).build()
    app.add_handler(conversation)
    return app, conversation


def test_ptb_is_the_version_these_internals_were_checked_against() -> None:
    assert telegram.__version__ == "22.8", "re-check handlers/ptb_internals.py, then update"


def test_conversation_tables_are_the_handlers_own_state() -> None:
    app, _ = app_with_conversation()
    tables = conversation_tables(app)
    assert len(tables) == 1
    tables[0][(-100, 7)] = "top"
    tables[0][(-100, 8)] = "bottom"
    tables[0][(5, 7)] = "person"
    assert move_conversations(app, -100, -200) == {7: "top", 8: "bottom"}
    forget_conversations(app, 7)
    assert dict(tables[0]) == {(-200, 8): "bottom"}
