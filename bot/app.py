"""Application wiring: builds the PTB Application, its shared clients and its handlers.

Shared clients are created in post_init and closed in post_shutdown (as in the PTB
team's rules-bot); nothing lives in module globals, everything hangs off bot_data.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import replace
from typing import NoReturn

import aiohttp
from telegram.ext import Application, ApplicationBuilder

from bot.persistence import SQLitePersistence
from bot.settings import Settings
from handlers import (
    albums,
    bursts,
    commands,
    compare,
    guards,
    history,
    housekeeping,
    language,
    results,
)
from handlers.batches import BatchNotifier
from handlers.context import CONTEXT_TYPES, SERVICES_KEY, BotServices
from handlers.conversation import build_conversation
from handlers.delivery import StatusConfig
from handlers.errors import on_error
from handlers.gateway import TelegramFiles, TelegramGateway
from handlers.ordering import PerUserOrderedProcessor
from handlers.texts import Texts
from services.dashscope import DashScopeClient
from services.dashscope.ratelimit import SlidingWindowLimiter
from services.images.intake import ImageIntake
from services.images.normalize import ImageLimits
from services.retry import RetryPolicy
from services.storage.crops import CropStore
from services.storage.database import Database
from services.storage.jobs import JobStore
from services.storage.prefs import PrefsStore
from services.storage.profiles import ProfileStore
from services.storage.retention import Retention, run_forever
from services.storage.uploads import UploadCache
from services.tryon.features import Features
from services.tryon.garments import KeptGarments
from services.tryon.pipeline import RunnerConfig, TryOnRunner
from services.tryon.quota import QuotaPolicy
from services.tryon.scheduler import SchedulerLimits, TryOnScheduler

log = logging.getLogger(__name__)
BACKGROUND_KEY = "background_tasks"
PARSING_QPS = 10  # aitryon-parsing-v1 allows 10 requests per second
STOP_SIGNALS_KEY = "stop_signals"  # set by __main__: signals that stop the bot


def build_application(settings: Settings) -> Application:  # type: ignore[type-arg]
    # PTB's RetryAfter reads its own retry_after as int (deprecated) unless this opt-in is
    # set; services.telegram_io handles the timedelta it gives instead.
    os.environ.setdefault("PTB_TIMEDELTA", "1")
    db = Database(settings.database_path)
    root = settings.telegram_api_base_url
    application = (
        ApplicationBuilder()
        .token(settings.telegram_bot_token)
        .base_url(f"{root}/bot")
        .base_file_url(f"{root}/file/bot")
        .persistence(SQLitePersistence(db, update_interval=1.0))
        .post_init(_post_init)
        .post_stop(_post_stop)
        .post_shutdown(_post_shutdown)
        .media_write_timeout(60)
        .read_timeout(15)
        .job_queue(None)
        # Chats (and members) concurrently, each (chat, user) in order: handlers/ordering.py.
        .concurrent_updates(PerUserOrderedProcessor())
        .context_types(CONTEXT_TYPES)
        .build()
    )
    application.bot_data["settings"] = settings
    application.bot_data["db"] = db
    bursts.register(application)
    guards.register(application)
    language.register(application)
    application.add_handler(build_conversation())
    albums.register(application)
    compare.register(application)  # before commands: its private catch-all takes commands too
    history.register(application)
    commands.register(application)
    results.register(application)
    housekeeping.register(application)
    application.add_error_handler(on_error)
    return application


async def _post_init(application: Application) -> None:  # type: ignore[type-arg]
    settings: Settings = application.bot_data["settings"]
    db: Database = application.bot_data["db"]
    svc = build_services(application, settings, db)
    application.bot_data[SERVICES_KEY] = svc
    svc.languages.update(await svc.prefs.languages())
    application.bot_data[bursts.BURSTS_KEY] = bursts.BurstGuard(svc.gateway)
    await language.set_commands(application.bot, svc.texts)
    try:
        resumed = await svc.runner.resume()
    except Exception:  # the bot still starts; the jobs stay in the database
        log.exception("Could not resume unfinished try-ons; the next start tries again")
        resumed = 0
    sweeper = asyncio.create_task(
        housekeeping.expire_idle_flows(
            application, settings.conversation_timeout, settings.sweep_interval
        ),
        name="expire-idle-flows",
    )
    # Prunes what is past its retention now, then hourly (see services/storage/retention.py).
    pruner = asyncio.create_task(
        run_forever(Retention(db, retention_days=settings.retention_days)), name="retention"
    )
    application.bot_data[BACKGROUND_KEY] = [sweeper, pruner]
    loop = asyncio.get_running_loop()
    for sig in application.bot_data.get(STOP_SIGNALS_KEY, ()):
        loop.add_signal_handler(sig, _on_stop_signal, svc)
    log.info(
        "Bot @%s ready: model %s, %d try-on(s) resumed",
        application.bot.username,
        settings.tryon_model,
        resumed,
    )


def build_services(
    application: Application,  # type: ignore[type-arg]
    settings: Settings,
    db: Database,
) -> BotServices:
    texts = Texts.load()
    store = JobStore(db)
    retry = RetryPolicy(
        attempts=settings.retry_attempts,
        base_delay=settings.retry_base_delay,
        max_delay=max(settings.retry_base_delay, 8.0),
    )
    http = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        connector=aiohttp.TCPConnector(limit=64),
    )
    submit_http = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        connector=aiohttp.TCPConnector(force_close=True),
    )
    dashscope = DashScopeClient(
        http,
        api_key=settings.dashscope_api_key,
        base_url=settings.dashscope_http_base_url,
        model=settings.tryon_model,
        retry=retry,
        request_timeout=settings.request_timeout,
        submit_limiter=SlidingWindowLimiter(settings.submit_qps),
        query_limiter=SlidingWindowLimiter(settings.query_qps),
        submit_session=submit_http,
        parse_limiter=SlidingWindowLimiter(PARSING_QPS),
    )
    # Telegram's flood waits and outages last longer than DashScope's hiccups.
    telegram_retry = replace(retry, max_delay=30.0)
    gateway = TelegramGateway(application.bot, retry=telegram_retry)
    intake = ImageIntake(
        TelegramFiles(application.bot, telegram_retry),
        dashscope,
        UploadCache(db),
        model=settings.tryon_model,
        limits=ImageLimits(max_side=settings.max_image_side),
    )
    scheduler = TryOnScheduler(SchedulerLimits(max_concurrent=settings.max_concurrent))
    features = Features(hd=settings.hd)
    garments = KeptGarments(intake, dashscope, CropStore(db))
    notifier = BatchNotifier(
        gateway,
        texts,
        StatusConfig(status_interval=settings.status_interval),
        features,
        store=store,
    )
    runner = TryOnRunner(
        store=store,
        intake=intake,
        client=dashscope,
        scheduler=scheduler,
        notifier=notifier,
        config=RunnerConfig(
            poll_interval=settings.poll_interval, task_deadline=settings.task_deadline
        ),
        garments=garments,
        features=features,
    )
    quota = QuotaPolicy(
        store,
        user_daily_limit=settings.user_daily_limit,
        daily_budget=settings.daily_budget,
        allowed_chats=settings.allowed_chats,
    )
    return BotServices(
        tryon_model=settings.tryon_model,
        texts=texts,
        store=store,
        profiles=ProfileStore(db),
        prefs=PrefsStore(db),
        http=http,
        submit_http=submit_http,
        dashscope=dashscope,
        gateway=gateway,
        intake=intake,
        scheduler=scheduler,
        runner=runner,
        quota=quota,
        garments=garments,
        features=features,
    )


def _on_stop_signal(svc: BotServices) -> NoReturn:
    """SIGTERM/SIGINT: from now on nothing waits on Telegram (flood control, back-off),
    so the pending updates, the handlers still running and the try-ons on the wire all end
    within the shutdown budget; then the same stop as PTB's own signal handler."""
    log.info("Stop signal: stopping without waiting on Telegram")
    svc.gateway.begin_shutdown()
    raise SystemExit


async def _post_stop(application: Application) -> None:  # type: ignore[type-arg]
    """SIGTERM: updates have stopped; unfinished try-ons stay in the database for the next start."""
    background: list[asyncio.Task[None]] = application.bot_data.get(BACKGROUND_KEY, [])
    for task in background:
        task.cancel()
    if background:  # let them end (a prune rolls back) before the database closes
        await asyncio.wait(background, timeout=2)
    svc: BotServices | None = application.bot_data.get(SERVICES_KEY)
    if svc is not None:
        svc.gateway.begin_shutdown()  # nothing waits on a flood-controlled chat from now on
        await svc.runner.stop()
        await svc.garments.close()
        await svc.gateway.close()  # messages still queued behind a flood wait are given up
        await svc.intake.close()
        log.info("Stopped; unfinished try-ons resume on the next start")


async def _post_shutdown(application: Application) -> None:  # type: ignore[type-arg]
    svc: BotServices | None = application.bot_data.get(SERVICES_KEY)
    if svc is not None:
        await svc.http.close()
        await svc.submit_http.close()
    db: Database = application.bot_data["db"]
    await db.close()
