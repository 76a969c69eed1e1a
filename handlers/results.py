"""The buttons under a result or a failure notice that act on a finished job:
"Full size" (the uncompressed file) and "Try again" (the same inputs, a new task)."""

from __future__ import annotations

from telegram import Message, Update
from telegram.ext import Application, CallbackQueryHandler

from handlers.common import say
from handlers.context import Context
from handlers.keyboards import Action, parse_callback, pattern
from handlers.launch import start_tryon
from services.dashscope import DashScopeError
from services.model import JobState
from services.tryon.failures import Failure


async def on_full_size(update: Update, context: Context) -> None:
    """Sends the result as a file: Telegram recompresses photos, documents keep every pixel."""
    query = update.callback_query
    assert query is not None and query.data is not None
    parsed = parse_callback(query.data)
    svc = context.services
    job = await svc.store.get(parsed.argument) if parsed else None
    if job is None or job.result_url is None:
        await query.answer(context.t("full_size_gone"), show_alert=True)
        return
    await query.answer(context.t("full_size_sending"))
    try:
        data = await svc.runner.full_size(job)
    except (DashScopeError, Failure):
        await say(
            update,
            context,
            context.t("full_size_gone"),
            thread_id=job.thread_id,
            reply_to=job.result_message_id,
        )
        return
    await svc.gateway.send_image(
        job.chat_id,
        data,
        None,
        thread_id=job.thread_id,
        reply_to=job.result_message_id,
        markup=None,
        as_document=True,
        filename="tryon-full.jpg",
    )


async def on_retry(update: Update, context: Context) -> None:
    """Runs a failed or interrupted job's inputs again: a new submit the user asked for."""
    query = update.callback_query
    assert query is not None and query.data is not None
    parsed = parse_callback(query.data)
    svc = context.services
    old = await svc.store.get(parsed.argument) if parsed else None
    if old is None or old.state not in (JobState.FAILED, JobState.INTERRUPTED):
        await query.answer(context.t("retry_unavailable"), show_alert=True)
        return
    refused = await start_tryon(context, old.rerun())
    if refused is not None:
        await query.answer(refused, show_alert=True)
        return
    await svc.store.update(old, state=JobState.RETRIED)
    await query.answer()
    if isinstance(query.message, Message):
        await svc.gateway.edit_markup(query.message)


def register(application: Application) -> None:  # type: ignore[type-arg]
    application.add_handler(CallbackQueryHandler(on_full_size, pattern=pattern(Action.FULL)))
    application.add_handler(CallbackQueryHandler(on_retry, pattern=pattern(Action.RETRY)))
