"""Commands outside the conversation: /help, /cancel of a running try-on, /forget, and a
hint for private messages that belong to no flow."""

from __future__ import annotations

from telegram import Update
from telegram.constants import ChatType
from telegram.ext import Application, CommandHandler, MessageHandler, filters

from handlers.common import say
from handlers.context import Context
from handlers.language import forget_language
from handlers.ptb_internals import forget_conversations
from services.tryon.pipeline import CancelOutcome


async def on_help(update: Update, context: Context) -> None:
    await say(update, context, context.t("help"))


async def on_stray_message(update: Update, context: Context) -> None:
    """A private message outside any flow: say how to start, rather than stay silent."""
    await say(update, context, context.t("idle_hint"), droppable=True)


async def on_cancel_job(update: Update, context: Context) -> None:
    """/cancel with no flow open: stop the user's try-on if DashScope still allows it."""
    chat, user = update.effective_chat, update.effective_user
    assert chat is not None and user is not None
    outcomes = await context.services.runner.cancel(chat.id, user.id)
    if not outcomes:
        await say(update, context, context.t("nothing_to_cancel"))
        return
    for _job, outcome in outcomes:
        if outcome is not CancelOutcome.CANCELED:  # a canceled job reports itself
            await say(update, context, context.t(f"cancel_{outcome.value}"))


async def on_forget(update: Update, context: Context) -> None:
    chat, user = update.effective_chat, update.effective_user
    assert chat is not None and user is not None
    svc = context.services
    await svc.store.forget_user(user.id)
    photo = await svc.profiles.get(user.id)
    if photo is not None:
        await svc.garments.forget(photo)
    await svc.profiles.delete(user.id)
    context.application.drop_user_data(user.id)
    forget_conversations(context.application, user.id)
    await forget_language(context, user.id, chat.id if chat.type == ChatType.PRIVATE else None)
    await say(update, context, context.t("forgotten"))  # in the language used until now


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
