"""Commands and buttons outside the conversation: /help, /cancel of a running try-on,
/forget, and the buttons under results and failure notices."""

from __future__ import annotations

import contextlib
import logging

from telegram import Message, Update
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from handlers.common import Context, lang_of, say, services, t
from handlers.conversation import refusal_text
from handlers.housekeeping import forget_conversations
from handlers.keyboards import CB_FULL, CB_RETRY, parse_callback
from services.dashscope import DashScopeError
from services.model import Job, JobState, new_job_id
from services.tryon.pipeline import CancelOutcome
from services.tryon.scheduler import QueueFull

log = logging.getLogger(__name__)


async def on_help(update: Update, context: Context) -> None:
    await say(update, context, t(context, lang_of(update), "help"))


async def on_stray_message(update: Update, context: Context) -> None:
    """A private message outside any flow: say how to start, rather than stay silent."""
    await say(update, context, t(context, lang_of(update), "idle_hint"))


async def on_cancel_job(update: Update, context: Context) -> None:
    """/cancel with no flow open: stop the user's try-on if DashScope still allows it."""
    chat, user = update.effective_chat, update.effective_user
    assert chat is not None and user is not None
    lang = lang_of(update)
    outcomes = await services(context).runner.cancel(chat.id, user.id)
    if not outcomes:
        await say(update, context, t(context, lang, "nothing_to_cancel"))
        return
    for _job, outcome in outcomes:
        if outcome is not CancelOutcome.CANCELED:  # a canceled job reports itself
            await say(update, context, t(context, lang, f"cancel_{outcome.value}"))


async def on_forget(update: Update, context: Context) -> None:
    chat, user = update.effective_chat, update.effective_user
    assert chat is not None and user is not None
    svc = services(context)
    await svc.store.forget_user(user.id)
    await svc.profiles.delete(user.id)
    context.application.drop_user_data(user.id)
    forget_conversations(context.application, user.id)
    await say(update, context, t(context, lang_of(update), "forgotten"))


async def on_full_size(update: Update, context: Context) -> None:
    """Sends the result as a file: Telegram recompresses photos, documents keep every pixel."""
    query = update.callback_query
    assert query is not None and query.data is not None
    parsed = parse_callback(query.data)
    svc = services(context)
    job = await svc.store.get(parsed[1]) if parsed else None
    lang = lang_of(update)
    if job is None or job.result_url is None:
        await query.answer(t(context, lang, "full_size_gone"), show_alert=True)
        return
    await query.answer(t(context, lang, "full_size_sending"))
    try:
        data = await svc.dashscope.download_result(job.result_url)
    except DashScopeError:
        await say(
            update,
            context,
            t(context, lang, "full_size_gone"),
            thread_id=job.thread_id,
            reply_to=job.result_message_id,
        )
        return
    await svc.messenger.guaranteed(
        job.chat_id,
        lambda: context.bot.send_document(
            job.chat_id,
            data,
            filename="tryon-full.jpg",
            message_thread_id=job.thread_id,
            reply_to_message_id=job.result_message_id,
            allow_sending_without_reply=True,
        ),
    )


async def on_retry(update: Update, context: Context) -> None:
    """Runs a failed or interrupted job's inputs again: a new submit the user asked for."""
    query = update.callback_query
    assert query is not None and query.data is not None
    parsed = parse_callback(query.data)
    svc = services(context)
    lang = lang_of(update)
    old = await svc.store.get(parsed[1]) if parsed else None
    if old is None or old.state not in (JobState.FAILED, JobState.INTERRUPTED):
        await query.answer(t(context, lang, "retry_unavailable"), show_alert=True)
        return
    job = Job(
        id=new_job_id(),
        chat_id=old.chat_id,
        thread_id=old.thread_id,
        user_id=old.user_id,
        lang=old.lang,
        model=old.model,
        person=old.person,
        top=old.top,
        bottom=old.bottom,
        request_message_id=old.request_message_id,
    )
    try:
        refusal = await svc.runner.launch(job, admit=lambda: svc.quota.check(old.user_id))
    except QueueFull:
        await query.answer(t(context, lang, "too_many_running"), show_alert=True)
        return
    if refusal is not None:
        await query.answer(refusal_text(context, lang, refusal), show_alert=True)
        return
    await svc.store.update(old, state=JobState.RETRIED)
    await query.answer()
    if isinstance(query.message, Message):
        with contextlib.suppress(TelegramError):
            await query.message.edit_reply_markup(None)


def register(application: Application) -> None:  # type: ignore[type-arg]
    messages = filters.UpdateType.MESSAGE
    application.add_handler(CommandHandler("help", on_help, filters=messages))
    application.add_handler(CommandHandler("cancel", on_cancel_job, filters=messages))
    application.add_handler(CommandHandler("forget", on_forget, filters=messages))
    application.add_handler(
        MessageHandler(
            messages & filters.ChatType.PRIVATE & ~filters.StatusUpdate.ALL, on_stray_message
        )
    )
    application.add_handler(CallbackQueryHandler(on_full_size, pattern=rf"^{CB_FULL}:"))
    application.add_handler(CallbackQueryHandler(on_retry, pattern=rf"^{CB_RETRY}:"))
