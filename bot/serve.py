"""The bot's lifecycle, in polling or webhook mode: the same steps as PTB's run_polling
(initialize, post_init, updates, start; then updater stop, stop, post_stop, shutdown,
post_shutdown), plus the HTTP server and the start-up checks. Used by `python -m bot` and
by the tests, so both run the same code."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from telegram import Update
from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import Application

from bot.app import HEALTH_KEY, METRICS_KEY, WEB_KEY, build_application
from bot.logs import RedactingFilter
from bot.settings import Settings
from bot.startup import TOKEN_REJECTED, StartupError
from bot.web import WebServer
from handlers.context import SERVICES_KEY, BotServices

log = logging.getLogger(__name__)

ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]
CONNECT_ATTEMPTS = 6
WEBHOOK_MAX_CONNECTIONS = 10  # one process; handlers are quick and try-ons run in the background
WEBHOOK_SELF_CHECK = 30.0  # seconds between getWebhookInfo calls in webhook mode


def describe(error: BaseException, settings: Settings) -> str:
    """One line for an exception, with every secret removed (PTB puts the token in some)."""
    text = f"{type(error).__name__}: {error}"
    return RedactingFilter(settings.secrets()).redact(text)


async def connect_telegram(app: Application, settings: Settings) -> None:  # type: ignore[type-arg]
    """getMe with back-off and one line per failed attempt; a rejected token stops it."""
    delay = max(settings.retry_base_delay, 0.01)
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            await app.bot.initialize()
            return
        except InvalidToken:
            raise StartupError(TOKEN_REJECTED) from None
        except (NetworkError, OSError) as error:
            if attempt == CONNECT_ATTEMPTS:
                raise StartupError(
                    f"Telegram is unreachable at {settings.telegram_api_base_url} after "
                    f"{attempt} attempts ({describe(error, settings)}): check the network, "
                    f"DNS, a proxy or TELEGRAM_API_BASE_URL"
                ) from None
            log.warning(
                "Telegram unreachable at %s (attempt %d/%d: %s); retrying in %.1f s",
                settings.telegram_api_base_url,
                attempt,
                CONNECT_ATTEMPTS,
                describe(error, settings),
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


@asynccontextmanager
async def running(
    settings: Settings, *, poll_timeout: float = 10.0, poll_interval: float = 0.0
) -> AsyncIterator[Application]:  # type: ignore[type-arg]
    app = build_application(settings)
    try:
        await connect_telegram(app, settings)
        await app.initialize()
    except BaseException:
        with contextlib.suppress(Exception):
            await app.bot.shutdown()
        await app.bot_data["db"].close()
        raise
    web: WebServer | None = None
    heartbeat: asyncio.Task[None] | None = None
    try:
        assert app.post_init is not None
        await app.post_init(app)
        if settings.http_port is not None:
            web = WebServer(app, settings, app.bot_data[HEALTH_KEY], app.bot_data[METRICS_KEY])
            app.bot_data[WEB_KEY] = web
            await web.start()
        if settings.telegram_webhook_url:
            await app.bot.set_webhook(
                settings.telegram_webhook_url,
                secret_token=settings.telegram_webhook_secret,
                allowed_updates=ALLOWED_UPDATES,
                max_connections=WEBHOOK_MAX_CONNECTIONS,
                drop_pending_updates=False,
            )
            log.info("Webhook set: Telegram sends updates to %s", settings.telegram_webhook_url)
            await app.start()
            heartbeat = asyncio.create_task(_webhook_self_check(app))
        else:
            await _leave_webhook(app)
            assert app.updater is not None
            await app.updater.start_polling(
                poll_interval=poll_interval,
                timeout=int(poll_timeout),
                allowed_updates=ALLOWED_UPDATES,
                drop_pending_updates=False,
                error_callback=lambda exc: _polling_error(app, exc),
            )
            await app.start()
        yield app
    finally:
        if web is not None:
            web.accepting = False
        if heartbeat is not None:
            heartbeat.cancel()
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
            if app.post_stop is not None:
                await app.post_stop(app)
        await app.shutdown()
        if app.post_shutdown is not None:
            await app.post_shutdown(app)
        if web is not None:
            await web.stop()


def _polling_error(app: Application, error: TelegramError) -> None:  # type: ignore[type-arg]
    app.create_task(app.process_error(error=error, update=None))


async def _leave_webhook(app: Application) -> None:  # type: ignore[type-arg]
    """Polling is configured: a webhook left from webhook mode is removed, updates kept
    (the updater's start_polling calls deleteWebhook too; this says so in the log)."""
    try:
        info = await app.bot.get_webhook_info()
    except TelegramError as error:
        log.warning("Could not read the webhook state: %s", error)
        return
    if info.url:
        log.info(
            "A webhook is set (%s, %d update(s) pending); switching to long polling: "
            "deleteWebhook, pending updates kept",
            info.url,
            info.pending_update_count,
        )
        await app.bot.delete_webhook(drop_pending_updates=False)


async def _webhook_self_check(app: Application) -> None:  # type: ignore[type-arg]
    """Webhook mode has no polls: a periodic getWebhookInfo is the loop's heartbeat, and
    Telegram's last delivery error goes to the log once."""
    last_error = ""
    while True:
        try:
            info = await app.bot.get_webhook_info()
        except TelegramError as error:
            log.warning("getWebhookInfo failed: %s", error)
        else:
            message = info.last_error_message or ""
            if message and message != last_error:
                log.error("Telegram cannot deliver to the webhook: %s", message)
            last_error = message
        await asyncio.sleep(WEBHOOK_SELF_CHECK)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    async with running(settings) as app:
        await stop.wait()
        log.info("Stop signal: stopping without waiting on Telegram")
        svc: BotServices | None = app.bot_data.get(SERVICES_KEY)
        if svc is not None:
            # From now on nothing waits on Telegram (flood control, back-off), so pending
            # updates, running handlers and try-ons on the wire end within the budget.
            svc.gateway.begin_shutdown()
