"""The one HTTP server (aiohttp): GET /healthz, GET /metrics and, in webhook mode, the
webhook path. Started when TRYON_HTTP_PORT is set."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from aiohttp import web
from telegram import Update
from telegram.ext import Application

from bot.health import database_problem
from bot.settings import Settings
from services.metrics import CONTENT_TYPE, Health, Metrics

log = logging.getLogger(__name__)

MAX_WEBHOOK_BODY = 1024 * 1024
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class WebServer:
    def __init__(
        self,
        application: Application,  # type: ignore[type-arg]
        settings: Settings,
        health: Health,
        metrics: Metrics,
    ) -> None:
        self._app = application
        self._settings = settings
        self._health = health
        self._metrics = metrics
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.accepting = True  # False once stopping: webhook requests get 503 (Telegram retries)

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_WEBHOOK_BODY + 1)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        if self._settings.telegram_webhook_url:
            app.router.add_post(self._settings.webhook_path, self.webhook)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            self._settings.http_host,
            self._settings.http_port or 0,
            reuse_address=True,
        )
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        log.info(
            "HTTP server on %s:%d (/healthz, /metrics%s)",
            self._settings.http_host,
            self.port,
            ", webhook " + self._settings.webhook_path
            if self._settings.telegram_webhook_url
            else "",
        )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def healthz(self, request: web.Request) -> web.Response:
        reasons: list[str] = []
        if not self._app.running:
            reasons.append("the application is not running")
        if (loop := self._health.loop_problem()) is not None:
            reasons.append(loop)
        if (db := await database_problem(self._settings.database_path)) is not None:
            reasons.append(db)
        if (ds := self._health.dashscope_problem()) is not None:
            reasons.append(ds)
        body: dict[str, Any] = {"status": "unhealthy" if reasons else "ok"}
        if reasons:
            body["reasons"] = reasons
        if self._health.account_problem:
            # Not a reason to restart (a restart cannot fix a key); shown for the operator.
            body["dashscope_account"] = self._health.account_problem
        return web.json_response(body, status=503 if reasons else 200)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def webhook(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "")
        secret = self._settings.telegram_webhook_secret
        if not hmac.compare_digest(given.encode(), secret.encode()):
            log.warning("Webhook request without the right secret token from %s", request.remote)
            return web.json_response({"error": "unauthorized"}, status=401)
        if not self.accepting or not self._app.running:
            return web.json_response({"error": "stopping"}, status=503)
        if request.content_length is not None and request.content_length > MAX_WEBHOOK_BODY:
            return web.json_response({"error": "body too large"}, status=400)
        try:
            body = await request.content.read(MAX_WEBHOOK_BODY + 1)
        except OSError:  # the sender went away mid-request; Telegram sends it again
            return web.json_response({"error": "incomplete"}, status=400)
        if len(body) > MAX_WEBHOOK_BODY:
            return web.json_response({"error": "body too large"}, status=400)
        try:
            data = json.loads(body)
        except ValueError:
            return web.json_response({"error": "not JSON"}, status=400)
        if not isinstance(data, dict) or "update_id" not in data:
            return web.json_response({"error": "not an update"}, status=400)
        update = Update.de_json(data, self._app.bot)
        await self._app.update_queue.put(update)
        self._health.beat()
        return web.json_response({"ok": True})
