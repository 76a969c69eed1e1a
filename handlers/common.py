"""Small helpers every handler uses: the services, the user's language, replies."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, cast

from telegram import ForceReply, InlineKeyboardMarkup, Message, ReplyParameters, Update
from telegram.constants import ChatType, ParseMode
from telegram.ext import Application, ContextTypes

from handlers.context import SERVICES_KEY, BotServices
from services.i18n import language_for

Context = ContextTypes.DEFAULT_TYPE
PROMPT_MAX_WAIT = 30.0  # seconds a prompt may wait out flood control before giving up


def services(context: Context) -> BotServices:
    return cast(BotServices, context.bot_data[SERVICES_KEY])


def lang_of(update: Update) -> str:
    user = update.effective_user
    return language_for(user.language_code if user else None)


def t(context: Context, lang: str, key: str, **values: Any) -> str:
    return services(context).texts.get(lang, key, **values)


def is_group(update: Update) -> bool:
    chat = update.effective_chat
    return chat is not None and chat.type in (ChatType.GROUP, ChatType.SUPERGROUP)


def thread_of(message: Message | None) -> int | None:
    """The forum topic to stay in; a plain reply chain's thread id is not a topic."""
    if message is not None and message.is_topic_message:
        return message.message_thread_id
    return None


async def say(
    update: Update,
    context: Context,
    text: str,
    *,
    markup: InlineKeyboardMarkup | None = None,
    force_reply: bool = False,
    reply_to: int | None = None,
    thread_id: int | None = None,
) -> Message:
    """Answers the user where they are: in groups it replies to them (and can force a
    reply, which is how photos reach a bot in privacy mode); in private it just talks."""
    chat = update.effective_chat
    user = update.effective_user
    assert chat is not None
    message = update.effective_message
    group = is_group(update)
    if reply_to is None and group and message is not None and update.callback_query is None:
        reply_to = message.message_id
    reply_markup: InlineKeyboardMarkup | ForceReply | None = markup
    if group and force_reply:
        reply_markup = ForceReply(selective=True)
        if user is not None and update.callback_query is not None:
            # A selective ForceReply reaches the users mentioned in the text.
            text = f"{user.mention_html()} {text}"
    if thread_id is None:
        thread_id = thread_of(message)
    reply_parameters = (
        ReplyParameters(message_id=reply_to, allow_sending_without_reply=True)
        if reply_to is not None
        else None
    )
    # Prompts are retried through flood waits too (in a group, a lost prompt leaves the
    # user nothing to reply to), but within a bound: the user is waiting on it.
    return await services(context).messenger.guaranteed(
        chat.id,
        lambda: context.bot.send_message(
            chat.id,
            text,
            parse_mode=ParseMode.HTML,
            reply_markup=reply_markup,
            message_thread_id=thread_id,
            reply_parameters=reply_parameters,
        ),
        max_wait=PROMPT_MAX_WAIT,
    )


def spent(context: Context, chat_id: int) -> None:
    """Counts a message sent (or edited) in a group against its ~20/minute budget, which
    status edits leave room in: prompts count as much as anything else."""
    services(context).messenger.budget.record(chat_id)


def conversation_tables(
    app: Application,  # type: ignore[type-arg]
) -> list[MutableMapping[tuple[int, ...], object]]:
    """The state tables of the app's ConversationHandlers, keyed (chat, user).

    PTB keeps them private and offers no API to move or drop a key; group migration and
    /forget need both. Writes go through PTB's tracking dict, so they are persisted.
    """
    return [
        tables
        for handlers in app.handlers.values()
        for handler in handlers
        if (tables := getattr(handler, "_conversations", None)) is not None
    ]
