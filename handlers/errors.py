"""The last line of defence: log with context, apologise briefly, keep flows consistent,
and tell the admins (with a short id that matches the log line)."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.error import Conflict, Forbidden, NetworkError, RetryAfter

from handlers.admin import ADMIN_KEY
from handlers.admin_reports import EXCEPTION, error_id
from handlers.common import say
from handlers.context import Context
from handlers.gateway import ShuttingDown

log = logging.getLogger(__name__)
CONFLICT_LOGGED = "conflict_logged"


async def on_error(update: object, context: Context) -> None:
    error = context.error
    if isinstance(error, ShuttingDown):
        log.info("An answer was dropped while stopping: %s", error)
        return
    if isinstance(error, Conflict) and not isinstance(update, Update):
        # Another process polls with this token: one clear line, not a traceback per poll.
        if not context.bot_data.get(CONFLICT_LOGGED):
            context.bot_data[CONFLICT_LOGGED] = True
            log.error(
                "409 Conflict: another process is getting updates with this bot token "
                "(or a webhook is set). Stop the other instance; this one keeps retrying"
            )
        return
    if isinstance(error, (NetworkError, RetryAfter)) and not isinstance(update, Update):
        log.warning("Telegram connection problem: %s", error)  # polling retries by itself
        return
    user = update.effective_user if isinstance(update, Update) else None
    chat = update.effective_chat if isinstance(update, Update) else None
    if isinstance(error, Forbidden):  # blocked or kicked: nothing to apologise to
        log.info("Chat %s refuses the bot: %s", chat.id if chat else None, error)
        return
    ref = error_id()
    log.error(
        "Unhandled error %s for user %s in chat %s: %r",
        ref,
        user.id if user else None,
        chat.id if chat else None,
        error,
        exc_info=error,
    )
    tools = context.bot_data.get(ADMIN_KEY)
    if tools is not None and error is not None:
        try:
            await tools.reporter.report(
                EXCEPTION,
                f'error {ref}: {type(error).__name__} (the log line says "Unhandled error {ref}")',
            )
        except Exception as report_error:  # never let a report hide the original problem
            log.warning("Could not report error %s: %r", ref, report_error)
    if not isinstance(update, Update) or chat is None or isinstance(error, Forbidden):
        return
    try:
        await say(update, context, context.t("internal_error"), droppable=True)
    except Exception as send_error:  # the apology itself failed: nothing more to do
        log.warning("Could not send the apology: %r", send_error)
