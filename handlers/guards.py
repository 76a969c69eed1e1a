"""Checks that run before the other handlers (group -1, right after the burst and flood
guard of handlers/bursts.py) and stop an update that must not go further: buttons
pressed by someone else, anonymous admins, the allowlist. Refusals are dropped, not
waited for, under flood control."""

from __future__ import annotations

import logging

from telegram import CallbackQuery, Message, Update
from telegram.constants import ChatID
from telegram.ext import Application, ApplicationHandlerStop, TypeHandler

from handlers.admin import ADMIN_KEY
from handlers.admin_reports import ACCOUNT
from handlers.common import is_group, say
from handlers.context import Context
from handlers.keyboards import Action, parse_callback

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
    tools = context.bot_data.get(ADMIN_KEY)
    admin = tools is not None and tools.is_admin(user.id)
    if not admin and not await _allowed(context, chat.id, user.id, message):
        log.info("Refused user %s in chat %s: not on the allowlist", user.id, chat.id)
        if query is not None:
            await query.answer(context.t("not_allowed"), show_alert=True)
        elif is_command or not is_group(update):
            await say(update, context, context.t("not_allowed"), droppable=True)
        raise ApplicationHandlerStop
    if tools is not None and _starts_a_tryon(message, query) and not await tools.account.usable():
        await _service_unavailable(update, context)
        raise ApplicationHandlerStop


async def _allowed(context: Context, chat_id: int, user_id: int, message: Message | None) -> bool:
    quota = context.services.quota
    if quota.allowed(chat_id, user_id):
        return True
    old = message.migrate_from_chat_id if message is not None else None
    if old is not None and quota.allowed(old, user_id):
        await quota.chat_migrated(old, chat_id)  # the supergroup made from an allowed group
        return True
    await quota.refresh_migrations()  # a migration the pipeline recorded meanwhile
    return quota.allowed(chat_id, user_id)


def _starts_a_tryon(message: Message | None, query: CallbackQuery | None) -> bool:
    if query is not None:
        parsed = parse_callback(query.data or "")
        return parsed is not None and parsed.action in (Action.AGAIN, Action.NEW, Action.RETRY)
    if message is None or not is_command_for_me(message):
        return False
    name = (message.text or "").split(maxsplit=1)[0].partition("@")[0]
    return name == "/tryon"


async def _service_unavailable(update: Update, context: Context) -> None:
    """DashScope refuses the account: say so at once instead of taking photos for nothing.
    "The owner has been notified" only when an admin really got the report."""
    tools = context.bot_data[ADMIN_KEY]
    notified = tools.reporter.recently_notified(ACCOUNT)
    text = context.t("fail_service_unavailable" if notified else "fail_service_unavailable_plain")
    log.info("Try-on refused at once: the DashScope account has a problem")
    if update.callback_query is not None:
        await update.callback_query.answer(text, show_alert=True)
    else:
        await say(update, context, text)


def register(application: Application) -> None:  # type: ignore[type-arg]
    application.add_handler(TypeHandler(Update, guard), group=GUARD_GROUP)
