"""/language (a button per language, stored per user) and the command menus per language."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeChat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
)
from telegram.constants import ChatType
from telegram.error import TelegramError
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, TypeHandler, filters

from handlers.common import say
from handlers.context import Context
from handlers.keyboards import Action, callback, parse_callback, pattern
from handlers.texts import (
    DEFAULT_LANGUAGE,
    LANGUAGE_INFO,
    LANGUAGE_LIST,
    LANGUAGES,
    Texts,
    language_for,
)

log = logging.getLogger(__name__)

PRIVATE_COMMANDS = ("tryon", "me", "cancel", "help", "compare", "history", "language", "forget")
GROUP_COMMANDS = ("tryon", "me", "cancel", "help", "compare", "history", "language")


def menu_code(lang: str) -> str | None:
    """Telegram keys command menus by two-letter codes: `zh` gets Simplified Chinese and
    `pt` Brazilian Portuguese; English is the default for everyone else."""
    if lang == DEFAULT_LANGUAGE:
        return None
    return lang.split("-")[0]


# One menu per two-letter code. Traditional Chinese cannot have its own (`zh` is
# Simplified): its users get it in their private chat, set per chat on first contact.
PER_CHAT_MENU_LANGUAGES = frozenset({"zh-hant"})
MENU_LANGUAGES = tuple(lang for lang in LANGUAGES if lang not in PER_CHAT_MENU_LANGUAGES)
MENU_GROUP = 2  # after the handlers (0) and the flush (1)


def commands(texts: Texts, lang: str, names: tuple[str, ...]) -> list[BotCommand]:
    return [BotCommand(name, texts.get(lang, f"cmd_{name}")) for name in names]


async def set_commands(bot: Bot, texts: Texts) -> None:
    """Command lists per scope and language, so each chat shows the ones that work there."""
    scopes: list[tuple[Any, tuple[str, ...]]] = [
        (BotCommandScopeAllPrivateChats(), PRIVATE_COMMANDS),
        (BotCommandScopeAllGroupChats(), GROUP_COMMANDS),
    ]
    try:
        for scope, names in scopes:
            for lang in MENU_LANGUAGES:
                await bot.set_my_commands(
                    commands(texts, lang, names), scope=scope, language_code=menu_code(lang)
                )
    except TelegramError as error:
        log.warning("Could not set the command menu: %s", error)


async def set_chat_menu(bot: Bot, texts: Texts, chat_id: int, lang: str | None) -> None:
    """A private chat's own menu in the language its user chose (None: back to default)."""
    scope = BotCommandScopeChat(chat_id)
    with contextlib.suppress(TelegramError):
        if lang is None:
            await bot.delete_my_commands(scope=scope)
        else:
            await bot.set_my_commands(commands(texts, lang, PRIVATE_COMMANDS), scope=scope)


def language_markup(current: str, user_id: int) -> InlineKeyboardMarkup:
    buttons = [
        InlineKeyboardButton(
            f"✓ {language.name}" if language.code == current else language.name,
            callback_data=callback(Action.LANGUAGE, user_id, language.code),
        )
        for language in LANGUAGE_LIST
    ]
    return InlineKeyboardMarkup([buttons[i : i + 2] for i in range(0, len(buttons), 2)])


async def on_language(update: Update, context: Context) -> None:
    user = update.effective_user
    assert user is not None
    await say(
        update, context, context.t("language_prompt"), markup=language_markup(context.lang, user.id)
    )


async def on_language_chosen(update: Update, context: Context) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None
    parsed = parse_callback(query.data)
    lang = parsed.argument if parsed else ""
    if lang not in LANGUAGE_INFO:
        await query.answer()
        return
    svc = context.services
    await svc.prefs.set_language(query.from_user.id, lang)
    svc.languages[query.from_user.id] = lang
    for draft in (context.user_data or {}).get("flows", {}).values():
        draft["lang"] = lang  # a try-on under way goes on in the new language
    log.info("User %s chose the language %s", query.from_user.id, lang)
    await query.answer()
    message = query.message
    if isinstance(message, Message):
        with contextlib.suppress(TelegramError):
            await message.edit_text(svc.texts.get(lang, "language_set"))
        if message.chat.type == ChatType.PRIVATE:
            await set_chat_menu(context.bot, svc.texts, message.chat_id, lang)


async def forget_language(context: Context, user_id: int, chat_id: int | None) -> None:
    """/forget: deletes the stored choice, its cached copy and the private chat's own menu."""
    svc = context.services
    await svc.prefs.forget(user_id)
    if svc.languages.pop(user_id, None) is not None and chat_id is not None:
        await set_chat_menu(context.bot, svc.texts, chat_id, None)
        svc.chat_menus.discard(chat_id)  # set again from the app's language if need be


async def menu_on_first_contact(update: Update, context: Context) -> None:
    """A private chat with a user whose app language has no menu of its own gets one."""
    chat, user = update.effective_chat, update.effective_user
    if chat is None or user is None or chat.type != ChatType.PRIVATE:
        return
    svc = context.services
    if user.id in svc.languages or chat.id in svc.chat_menus:
        return
    lang = language_for(user.language_code)
    if lang in PER_CHAT_MENU_LANGUAGES:
        svc.chat_menus.add(chat.id)
        await set_chat_menu(context.bot, svc.texts, chat.id, lang)


def register(application: Application) -> None:  # type: ignore[type-arg]
    """Before the conversation: /language works in the middle of a try-on too."""
    messages = filters.UpdateType.MESSAGE
    application.add_handler(CommandHandler("language", on_language, filters=messages))
    application.add_handler(
        CallbackQueryHandler(on_language_chosen, pattern=pattern(Action.LANGUAGE))
    )
    application.add_handler(TypeHandler(Update, menu_on_first_contact), group=MENU_GROUP)
