"""What every handler gets: a typed CallbackContext with the services, the texts and the
user's language (PTB's `ContextTypes`, as in its contexttypesbot example).

`BotServices` is built in `bot.app` (post_init) and closed there (post_shutdown); the
handlers only read it through the context, so nothing here imports from `bot/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
from telegram import Update
from telegram.ext import Application, CallbackContext, ContextTypes, ExtBot

from handlers.gateway import TelegramGateway
from services.dashscope import DashScopeClient
from services.i18n import Texts, language_for
from services.images.intake import ImageIntake
from services.storage.jobs import JobStore
from services.storage.profiles import ProfileStore
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
    http: aiohttp.ClientSession
    submit_http: aiohttp.ClientSession
    dashscope: DashScopeClient
    gateway: TelegramGateway
    intake: ImageIntake
    scheduler: TryOnScheduler
    runner: TryOnRunner
    quota: QuotaPolicy


def lang_of(update: object) -> str:
    """The language to answer this update in, from the user's Telegram settings."""
    user = update.effective_user if isinstance(update, Update) else None
    return language_for(user.language_code if user else None)


class TryOnContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    lang: str = "en"

    @classmethod
    def from_update(
        cls,
        update: object,
        application: Application[Any, Any, Any, Any, Any, Any],
    ) -> TryOnContext:
        context = super().from_update(update, application)
        context.lang = lang_of(update)
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
