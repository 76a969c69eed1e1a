"""Checks that run before the other handlers (group -1, right after the burst and flood
guard of handlers/bursts.py) and stop an update that must not go further: buttons
pressed by someone else, anonymous admins, the allowlist. Refusals are dropped, not
waited for, under flood control."""

from __future__ import annotations

import logging

from telegram import Message, Update
from telegram.constants import ChatID
from telegram.ext import Application, ApplicationHandlerStop, TypeHandler

from handlers.common import is_group, say
from handlers.context import Context
from handlers.keyboards import parse_callback

log = logging.getLogger(__name__)
GUARD_GROUP = -1


def is_command_for_me(message: Message) -> bool:
    """A command without a bot name, or with this bot's: "/tryon@OtherBot" is not ours."""
    text = message.text or ""
    if not text.startswith("/"):
        return False
    _, _, target = text.split(maxsplit=1)[0].partition("@")
    return not target or target.lower() == (message.get_bot().username or "").lower()


async def guard(update: Update, context: Context) -> None:
    query = update.callback_query
    user, chat, message = update.effective_user, update.effective_chat, update.effective_message
    if user is None or chat is None:
        raise ApplicationHandlerStop  # channel posts, polls…: nothing for this bot
    if query is not None:
        parsed = parse_callback(query.data or "")
        if parsed is None or parsed.owner != user.id:
            await query.answer(context.t("not_your_button"), show_alert=True)
            raise ApplicationHandlerStop
    is_command = message is not None and is_command_for_me(message)
    anonymous = user.id == ChatID.ANONYMOUS_ADMIN or (
        message is not None and message.sender_chat is not None and is_group(update)
    )
    if anonymous and message is not None:
        if is_command:
            await say(update, context, context.t("anonymous_admin"), droppable=True)
        raise ApplicationHandlerStop
    if not context.services.quota.allowed(chat.id, user.id):
        log.info("Refused user %s in chat %s: not on the allowlist", user.id, chat.id)
        if query is not None:
            await query.answer(context.t("not_allowed"), show_alert=True)
        elif is_command or not is_group(update):
            await say(update, context, context.t("not_allowed"), droppable=True)
        raise ApplicationHandlerStop


def register(application: Application) -> None:  # type: ignore[type-arg]
    application.add_handler(TypeHandler(Update, guard), group=GUARD_GROUP)
