"""Background chores: persisting after every update, expiring idle flows (across
restarts: PTB does not persist its own conversation timeouts), forgetting the empty
user_data PTB keeps for every user it has seen, and group migration.

Background loops run under `supervised`: an unexpected exception is logged and the loop
goes on after a pause; only cancellation (at shutdown) ends it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import Application, MessageHandler, TypeHandler, filters

from handlers.common import PROMPT_MAX_WAIT
from handlers.context import SERVICES_KEY, BotServices, Context
from handlers.drafts import Draft, drop_draft, expired_drafts, load_draft, save_draft
from handlers.ordering import PerUserOrderedProcessor
from handlers.prompts import ask_again
from handlers.ptb_internals import forget_conversations, move_conversations

log = logging.getLogger(__name__)
FLUSH_GROUP = 1


async def flush(update: Update, context: Context) -> None:
    """Writes the conversation state and drafts right after each update, instead of
    waiting for PTB's periodic flush, so a killed process loses as little as possible."""
    if update.effective_user is not None:
        context.application.mark_data_for_update_persistence(user_ids=[update.effective_user.id])
    await context.application.update_persistence()


async def on_migrate(update: Update, context: Context) -> None:
    """A group became a supergroup: its chat id changed, so move flows and jobs along."""
    message = update.effective_message
    if message is None or message.migrate_to_chat_id is None:
        return
    old, new = message.chat_id, message.migrate_to_chat_id
    log.info("Chat %s migrated to %s", old, new)
    await context.services.store.migrate_chat(old, new)
    app = context.application
    moved: dict[int, Draft] = {}
    for user_id, data in app.user_data.items():
        draft = load_draft(data, old)
        if draft is not None:
            data["flows"].pop(str(old))
            draft.last_message_id = None  # message ids of the old chat mean nothing in the new
            save_draft(data, new, draft)
            app.mark_data_for_update_persistence(user_ids=[user_id])
            moved[user_id] = draft
    states = move_conversations(app, old, new)
    # Each member's prompt stays behind in the old chat, where nobody can answer it any more.
    for user_id, draft in moved.items():
        if user_id in states:
            with contextlib.suppress(TelegramError):
                await ask_again(context, new, user_id, draft, states[user_id])


async def supervised(name: str, step: Callable[[], Awaitable[None]], interval: float) -> None:
    """Runs `step` every `interval` seconds until cancelled. An unexpected exception is
    logged, and the loop carries on with the next round."""
    while True:
        await asyncio.sleep(interval)
        try:
            await step()
        except Exception:
            log.exception("Background loop %s failed; it carries on", name)


async def expire_idle_flows_once(app: Application, idle_limit: float) -> None:  # type: ignore[type-arg]
    """Ends drafts idle for longer than the timeout, with a short note to their user."""
    services: BotServices = app.bot_data[SERVICES_KEY]
    now = time.time()
    for user_id, data in list(app.user_data.items()):
        try:
            expired = expired_drafts(data, idle_limit, now)
        except Exception:  # one unreadable draft must not keep the others from expiring
            log.exception("Could not read the drafts of user %s", user_id)
            continue
        for chat_id, draft in expired:
            drop_draft(data, chat_id)
            forget_conversations(app, user_id, chat_id)  # no row outlives its flow
            app.mark_data_for_update_persistence(user_ids=[user_id])
            log.info("Flow of user %s in chat %s expired", user_id, chat_id)
            with contextlib.suppress(TelegramError):  # queued under flood control, never waited
                await services.gateway.send_text(
                    chat_id,
                    services.texts.get(draft.lang, "flow_timed_out"),
                    thread_id=draft.thread_id,
                    max_wait=PROMPT_MAX_WAIT,
                )
    forget_empty_user_data(app)
    await app.update_persistence()


def forget_empty_user_data(app: Application) -> int:  # type: ignore[type-arg]
    """PTB keeps a user_data dict for every user it has seen; empty ones of users with no
    update in progress are dropped (a handler may be about to fill one in)."""
    processor = app.update_processor
    busy = processor.users() if isinstance(processor, PerUserOrderedProcessor) else None
    if busy is None:
        return 0
    empty = [uid for uid, data in app.user_data.items() if not data and uid not in busy]
    for user_id in empty:
        app.drop_user_data(user_id)
    return len(empty)


async def expire_idle_flows(app: Application, idle_limit: float, interval: float) -> None:  # type: ignore[type-arg]
    await supervised("expire-idle-flows", lambda: expire_idle_flows_once(app, idle_limit), interval)


def register(application: Application) -> None:  # type: ignore[type-arg]
    application.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, on_migrate))
    application.add_handler(TypeHandler(Update, flush), group=FLUSH_GROUP)
