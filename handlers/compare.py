"""Compare (button under a result in groups, after a batch; typed twin /compare): a
side-by-side collage of the user's last 2–4 results of the past 24 hours, labelled 1–4,
with a native poll "Which one?" in groups (not anonymous: friends see who voted for
what). In a private chat the collage comes alone, with a hint to forward it."""

from __future__ import annotations

import asyncio
import logging
import time

from telegram import InputPollOption, ReplyParameters, Update
from telegram.error import TelegramError
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, filters

from handlers.batches import DOCUMENT_PREFIX
from handlers.common import is_group, say, thread_of
from handlers.context import Context
from handlers.gateway import TelegramFiles
from handlers.keyboards import Action, pattern
from services.images.collage import MAX_PANELS, collage
from services.tryon.ports import FileUnavailable

log = logging.getLogger(__name__)

RESULTS_KEPT = 24 * 3600.0  # seconds: DashScope keeps results a day; so do compare and /history


async def on_compare(update: Update, context: Context) -> None:
    chat, user = update.effective_chat, update.effective_user
    assert chat is not None and user is not None
    if update.callback_query is not None:
        await update.callback_query.answer()
    svc = context.services
    since = time.time() - RESULTS_KEPT
    jobs = await svc.store.recent_results(user.id, chat.id, since, limit=MAX_PANELS)
    if len(jobs) < 2:
        await say(update, context, context.t("compare_none"))
        return
    jobs.reverse()  # oldest first: a batch keeps its numbers
    files = TelegramFiles(context.bot, svc.gateway.retry)
    try:
        images = await asyncio.gather(
            *(files.download((j.result_file_id or "").removeprefix(DOCUMENT_PREFIX)) for j in jobs)
        )
        picture = await asyncio.to_thread(collage, [bytes(image) for image in images])
    except (FileUnavailable, OSError, ValueError, TelegramError) as error:
        log.warning("compare for user %s failed: %r", user.id, error)
        await say(update, context, context.t("compare_failed"))
        return
    count = len(jobs)
    group = is_group(update)
    caption = (
        context.t("compare_caption", count=count)
        if group
        else context.t("compare_private_hint", n=count)
    )
    message = update.effective_message
    reply_to = message.message_id if group and message is not None else None
    thread_id = thread_of(message)
    sent = await svc.gateway.send_image(
        chat.id,
        picture,
        caption,
        thread_id=thread_id,
        reply_to=reply_to,
        markup=None,
        filename="compare.jpg",
    )
    if not group or sent is None:  # under flood control the collage went alone (queued)
        return
    options = [
        InputPollOption(context.t("compare_poll_option", number=n)) for n in range(1, count + 1)
    ]
    await svc.gateway.send(
        chat.id,
        lambda: context.bot.send_poll(
            chat.id,
            context.t("compare_poll_question"),
            options,
            is_anonymous=False,
            message_thread_id=thread_id,
            reply_parameters=ReplyParameters(sent.message_id, allow_sending_without_reply=True),
        ),
    )


def register(application: Application) -> None:  # type: ignore[type-arg]
    messages = filters.UpdateType.MESSAGE
    application.add_handler(CommandHandler("compare", on_compare, filters=messages))
    application.add_handler(CallbackQueryHandler(on_compare, pattern=pattern(Action.COMPARE)))
