"""The shared clients and services, created in post_init and closed in post_shutdown."""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp

from bot.settings import Settings
from handlers.texts import Texts
from services.dashscope import DashScopeClient
from services.database import Database
from services.jobs import JobStore
from services.preparer import ImagePreparer
from services.quota import QuotaPolicy
from services.scheduler import TryOnScheduler
from services.telegram_io import Messenger
from services.tryon import TryOnRunner

SERVICES_KEY = "services"


@dataclass
class BotServices:
    settings: Settings
    texts: Texts
    db: Database
    store: JobStore
    http: aiohttp.ClientSession
    submit_http: aiohttp.ClientSession
    dashscope: DashScopeClient
    messenger: Messenger
    preparer: ImagePreparer
    scheduler: TryOnScheduler
    runner: TryOnRunner
    quota: QuotaPolicy
    bot_username: str = ""
    # Languages chosen with /language, by user id (the user_prefs table, read at start).
    languages: dict[int, str] = field(default_factory=dict)
