"""The shared clients and services, created in post_init and closed in post_shutdown."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from bot.settings import Settings
from handlers.delivery import Messenger
from services.dashscope import DashScopeClient
from services.i18n import Texts
from services.images.intake import ImagePreparer
from services.storage.database import Database
from services.storage.jobs import JobStore
from services.storage.profiles import ProfileStore
from services.tryon.pipeline import TryOnRunner
from services.tryon.quota import QuotaPolicy
from services.tryon.scheduler import TryOnScheduler

SERVICES_KEY = "services"


@dataclass
class BotServices:
    settings: Settings
    texts: Texts
    db: Database
    store: JobStore
    profiles: ProfileStore
    http: aiohttp.ClientSession
    submit_http: aiohttp.ClientSession
    dashscope: DashScopeClient
    messenger: Messenger
    preparer: ImagePreparer
    scheduler: TryOnScheduler
    runner: TryOnRunner
    quota: QuotaPolicy
    bot_username: str = ""
