"""What every handler gets: a typed CallbackContext with the services, the texts and the
user's language (PTB's `ContextTypes`, as in its contexttypesbot example).

`BotServices` is built in `bot.app` (post_init) and closed there (post_shutdown); the
handlers only read it through the context, so nothing here imports from `bot/`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp
from telegram import Update
from telegram.ext import Application, CallbackContext, ContextTypes, ExtBot

from handlers.gateway import TelegramGateway
from handlers.texts import Texts, language_for
from services.dashscope import DashScopeClient
from services.images.intake import ImageIntake
from services.storage.jobs import JobStore
from services.storage.prefs import PrefsStore
from services.storage.profiles import ProfileStore
from services.tryon.features import Features
from services.tryon.garments import KeptGarments
from services.tryon.pipeline import TryOnRunner
from services.tryon.quota import QuotaPolicy
from services.tryon.scheduler import TryOnScheduler

SERVICES_KEY = "services"


@dataclass
class BotServices:
    tryon_model: str
    texts: Texts
    store: JobStore
    profiles: ProfileStore
    prefs: PrefsStore
    http: aiohttp.ClientSession
    submit_http: aiohttp.ClientSession
    dashscope: DashScopeClient
    gateway: TelegramGateway
    intake: ImageIntake
    scheduler: TryOnScheduler
    runner: TryOnRunner
    quota: QuotaPolicy
    garments: KeptGarments
    features: Features
    # Languages chosen with /language, by user id (the user_prefs table, read at start):
    # the language is needed for every update, so it is not read from the database each time.
    languages: dict[int, str] = field(default_factory=dict)
    # Private chats given their own command menu since start (see handlers.language).
    chat_menus: set[int] = field(default_factory=set)


def lang_of(update: object, services: BotServices | None = None) -> str:
    """The language to answer this update in: the user's /language choice, else their
    Telegram app's language."""
    user = update.effective_user if isinstance(update, Update) else None
    if user is None:
        return language_for(None)
    chosen = services.languages.get(user.id) if services is not None else None
    return chosen or language_for(user.language_code)


class TryOnContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    lang: str = "en"

    @classmethod
    def from_update(
        cls,
        update: object,
        application: Application[Any, Any, Any, Any, Any, Any],
    ) -> TryOnContext:
        context = super().from_update(update, application)
        context.lang = lang_of(update, application.bot_data.get(SERVICES_KEY))
        return context

    @property
    def services(self) -> BotServices:
        services: BotServices = self.bot_data[SERVICES_KEY]
        return services

    @property
    def texts(self) -> Texts:
        return self.services.texts

    def t(self, key: str, lang: str | None = None, **values: Any) -> str:
        """A text in the user's language (or `lang`, e.g. a draft's)."""
        return self.texts.get(lang or self.lang, key, **values)


CONTEXT_TYPES = ContextTypes(context=TryOnContext)
Context = TryOnContext
