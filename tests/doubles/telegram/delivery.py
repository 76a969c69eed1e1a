"""Update delivery: long polling (getUpdates) or a webhook (setWebhook/deleteWebhook/
getWebhookInfo), never both.

* getUpdates holds the request up to ``timeout`` s, drops updates below ``offset`` (that is how
  the bot confirms them), filters by ``allowed_updates``, and ends an older held request with
  409 "terminated by other getUpdates request" (bot-api-wire.md "Startup sequence").
* With a webhook set, getUpdates answers 409 "can't use getUpdates method while webhook is
  active", and the double POSTs each queued update as JSON to the webhook URL with the
  ``X-Telegram-Bot-Api-Secret-Token`` header, in order, one at a time; an update leaves the
  queue once the bot answers 2xx. Failures are retried and reported by getWebhookInfo
  (``last_error_date``, ``last_error_message``), as Telegram does (tgapi#setwebhook).
  Deviation: plain ``http://`` URLs are accepted for 127.0.0.1/localhost, any port (Telegram
  requires HTTPS on 443, 80, 88 or 8443).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from urllib.parse import urlsplit

import aiohttp

from tests.doubles.telegram.bot import BotSettings
from tests.doubles.telegram.params import flag, opt_float, opt_int, opt_str, update_type
from tests.doubles.telegram.records import (
    CONFLICT_POLLING,
    CONFLICT_WEBHOOK,
    DEFAULT_ALLOWED_UPDATES,
    JSON,
    SECRET_TOKEN_HEADER,
    ApiError,
    WebhookConfig,
    bad_request,
)

_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_KEEP = object()


class Delivery(BotSettings):
    """getUpdates and the webhook."""

    webhook_timeout = 10.0  # seconds the double waits for the bot's webhook answer
    webhook_retry_delay = 0.2  # seconds before a failed webhook delivery is retried

    async def before_close(self) -> None:
        await self._stop_pusher()
        if self._webhook_session is not None:
            await self._webhook_session.close()
            self._webhook_session = None
        await super().before_close()

    # -- long polling ----------------------------------------------------------------------

    def _drop_unwanted(self) -> None:
        for update in [u for u in self._queue if update_type(u) not in self._allowed_updates]:
            self._queue.remove(update)
            self.undelivered.append(update)

    async def _api_getUpdates(self, params: JSON) -> list[JSON]:
        if self.webhook.url:
            raise ApiError(409, CONFLICT_WEBHOOK)
        offset = opt_int(params, "offset")
        limit = min(max(opt_int(params, "limit") or 100, 1), 100)
        timeout = max(opt_float(params, "timeout") or 0.0, 0.0)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(allowed) if allowed else DEFAULT_ALLOWED_UPDATES
        if offset is not None and offset < 0:
            self._queue = self._queue[offset:]
        elif offset:
            self._queue = [u for u in self._queue if u["update_id"] >= offset]
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()  # an older held getUpdates now ends with 409 Conflict, as on Telegram
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._drop_unwanted()
            if self._queue or self._closed:
                return self._queue[:limit]
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            await self._changed(remaining)
            if generation != self._poll_generation:
                raise ApiError(409, CONFLICT_POLLING)
            if self.webhook.url:
                raise ApiError(409, CONFLICT_WEBHOOK)

    # -- webhook ---------------------------------------------------------------------------

    async def _api_setWebhook(self, params: JSON) -> bool:
        url = opt_str(params, "url") or ""
        if url:
            parts = urlsplit(url)
            loopback = parts.scheme == "http" and parts.hostname in _LOOPBACK
            if parts.scheme != "https" and not loopback:
                raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
            if parts.scheme == "https" and (parts.port or 443) not in (443, 80, 88, 8443):
                raise bad_request(
                    "bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"
                )
        secret = opt_str(params, "secret_token")
        if secret is not None and not _SECRET_RE.match(secret):
            raise bad_request("secret token contains unallowed characters")
        max_connections = opt_int(params, "max_connections") or 40
        if not 1 <= max_connections <= 100:
            raise bad_request("bad webhook: max_connections must be between 1 and 100")
        allowed = params.get("allowed_updates")
        drop = flag(params, "drop_pending_updates")
        config = WebhookConfig(
            url=url,
            secret_token=secret,
            allowed_updates=list(allowed) if isinstance(allowed, list) else None,
            max_connections=max_connections,
            drop_pending_updates=drop,
            ip_address=opt_str(params, "ip_address"),
        )
        self.webhook_history.append(config)
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(allowed) if allowed else DEFAULT_ALLOWED_UPDATES
        if drop:
            self.undelivered.extend(self._queue)
            self._queue.clear()
        if config.url != self.webhook.url:
            self.webhook_last_error = None
        self.webhook = config
        await self._stop_pusher()
        if url:
            self._pusher = asyncio.create_task(self._push_updates(), name="fake-telegram-webhook")
        self._notify()
        return True

    async def _api_deleteWebhook(self, params: JSON) -> bool:
        drop = flag(params, "drop_pending_updates")
        self.webhook_history.append(WebhookConfig(drop_pending_updates=drop))
        self.webhook = WebhookConfig(drop_pending_updates=drop)
        self.webhook_last_error = None
        await self._stop_pusher()
        if drop:
            self.undelivered.extend(self._queue)
            self._queue.clear()
        self._notify()
        return True

    async def _api_getWebhookInfo(self, params: JSON) -> JSON:
        info: JSON = {
            "url": self.webhook.url,
            "has_custom_certificate": False,
            "pending_update_count": self.pending_updates,
        }
        if not self.webhook.url:
            return info
        info["max_connections"] = self.webhook.max_connections
        if self.webhook.allowed_updates is not None:
            info["allowed_updates"] = self.webhook.allowed_updates
        if self.webhook.ip_address:
            info["ip_address"] = self.webhook.ip_address
        if self.webhook_last_error is not None:
            info["last_error_date"], info["last_error_message"] = self.webhook_last_error
        return info

    async def post_webhook(self, update: JSON, *, secret_token: object = _KEEP) -> int:
        """POSTs one `update` to the webhook URL now, as Telegram would, and returns the HTTP
        status (0 when the bot could not be reached). `secret_token` overrides the header
        (None: no header), e.g. to check that the bot rejects a forged request. Does not touch
        the queue; queued updates are pushed by the double itself."""
        if not self.webhook.url:
            raise RuntimeError("no webhook is set")
        secret = self.webhook.secret_token if secret_token is _KEEP else secret_token
        status, _ = await self._post_update(update, secret if isinstance(secret, str) else None)
        return status

    async def _post_update(self, update: JSON, secret: str | None) -> tuple[int, str | None]:
        if self._webhook_session is None:
            self._webhook_session = aiohttp.ClientSession()
        headers = {SECRET_TOKEN_HEADER: secret} if secret is not None else {}
        error: str | None = None
        try:
            async with self._webhook_session.post(
                self.webhook.url,
                json=update,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.webhook_timeout),
            ) as response:
                await response.read()
                status = response.status
        except TimeoutError:
            status, error = 0, "Read timeout expired"
        except aiohttp.ClientConnectorError:
            status, error = 0, "Connection refused"
        except aiohttp.ClientError as exc:
            status, error = 0, f"Connection error: {type(exc).__name__}"
        else:
            if not 200 <= status < 300:
                reason = f" {response.reason}" if response.reason else ""
                error = f"Wrong response from the webhook: {status}{reason}"
        self.webhook_posts.append((update, status or None))
        self._notify()
        return status, error

    async def _push_updates(self) -> None:
        """Delivers the queue to the webhook in order while it is set."""
        while self.webhook.url and not self._closed:
            self._drop_unwanted()
            if not self._queue:
                await self._changed(1.0)
                continue
            update = self._queue[0]
            _, error = await self._post_update(update, self.webhook.secret_token)
            if error is None:
                with contextlib.suppress(ValueError):
                    self._queue.remove(update)
                self._notify()
            else:
                self.webhook_last_error = (int(time.time()), error)
                await asyncio.sleep(self.webhook_retry_delay)

    async def _stop_pusher(self) -> None:
        pusher, self._pusher = self._pusher, None
        if pusher is not None and not pusher.done():
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher
