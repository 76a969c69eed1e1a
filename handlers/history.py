"""/history: the user's recent try-ons in this chat (the Telegram file ids of the
delivered results, for as long as results are kept), each re-sent on a tap at no cost."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, filters

from handlers.batches import DOCUMENT_PREFIX
from handlers.common import say, thread_of
from handlers.compare import RESULTS_KEPT
from handlers.context import Context
from handlers.keyboards import Action, callback, parse_callback, pattern, result_markup
from handlers.launch import button_job

HISTORY_SIZE = 8


async def on_history(update: Update, context: Context) -> None:
    chat, user = update.effective_chat, update.effective_user
    assert chat is not None and user is not None
    since = time.time() - RESULTS_KEPT
    jobs = await context.services.store.recent_results(user.id, chat.id, since, HISTORY_SIZE)
    if not jobs:
        await say(update, context, context.t("history_empty"))
        return
    rows = []
    for number, job in enumerate(jobs, start=1):
        when = datetime.fromtimestamp(job.created_at, UTC).strftime("%H:%M")
        label = context.t("history_item", number=number, when=when)
        rows.append(
            [InlineKeyboardButton(label, callback_data=callback(Action.HISTORY, user.id, job.id))]
        )
    await say(update, context, context.t("history_title"), markup=InlineKeyboardMarkup(rows))


async def on_history_item(update: Update, context: Context) -> None:
    """Re-sends a past result by its Telegram file id: no new try-on, no charge."""
    query = update.callback_query
    assert query is not None and query.data is not None
    parsed = parse_callback(query.data)
    svc = context.services
    job = await button_job(update, context, parsed.argument if parsed else None)
    fresh = job is not None and job.created_at >= time.time() - RESULTS_KEPT
    if job is None or job.result_file_id is None or not fresh:
        await query.answer(context.t("history_gone"), show_alert=True)
        return
    await query.answer()
    file_id = job.result_file_id
    await svc.gateway.send_image(
        job.chat_id,
        file_id.removeprefix(DOCUMENT_PREFIX),
        context.t("result_caption"),
        thread_id=thread_of(update.effective_message) or job.thread_id,
        reply_to=None,
        markup=result_markup(svc.texts, context.lang, job.id, job.user_id),
        as_document=file_id.startswith(DOCUMENT_PREFIX),
    )


def register(application: Application) -> None:  # type: ignore[type-arg]
    messages = filters.UpdateType.MESSAGE
    application.add_handler(CommandHandler("history", on_history, filters=messages))
    application.add_handler(CallbackQueryHandler(on_history_item, pattern=pattern(Action.HISTORY)))
