"""The last line of defence: log with context, apologise briefly, keep flows consistent."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.error import Forbidden, NetworkError, RetryAfter

from handlers.common import say
from handlers.context import Context
from handlers.gateway import ShuttingDown

log = logging.getLogger(__name__)


async def on_error(update: object, context: Context) -> None:
    error = context.error
    if isinstance(error, ShuttingDown):
        log.info("An answer was dropped while stopping: %s", error)
        return
    if isinstance(error, (NetworkError, RetryAfter)) and not isinstance(update, Update):
        log.warning("Telegram connection problem: %s", error)  # polling retries by itself
        return
    user = update.effective_user if isinstance(update, Update) else None
    chat = update.effective_chat if isinstance(update, Update) else None
    if isinstance(error, Forbidden):  # blocked or kicked: nothing to apologise to
        log.info("Chat %s refuses the bot: %s", chat.id if chat else None, error)
        return
    log.error(
        "Unhandled error for user %s in chat %s: %r",
        user.id if user else None,
        chat.id if chat else None,
        error,
        exc_info=error,
    )
    if not isinstance(update, Update) or chat is None or isinstance(error, Forbidden):
        return
    try:
        await say(update, context, context.t("internal_error"), droppable=True)
    except Exception as send_error:  # the apology itself failed: nothing more to do
        log.warning("Could not send the apology: %r", send_error)
