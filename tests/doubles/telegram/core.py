"""State, waiting and recording of the Bot API double (the base of `FakeTelegram`).

`FakeTelegram` is built as a chain of layers, one module per concern, each adding to this one:
core (state, waiting, what was recorded) → faults → files → updates (the simulated users) →
messages → edits → bot (getMe, commands, callbacks, chats) → delivery (getUpdates, webhooks) →
server (HTTP routing). Tests only use the final class.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

from tests.doubles.server import LocalServer
from tests.doubles.telegram.records import (
    DEFAULT_ALLOWED_UPDATES,
    DEFAULT_TOKEN,
    JSON,
    Call,
    ChatActionRecord,
    ChatState,
    FaultRule,
    FloodRule,
    SentMessage,
    StoredFile,
    UploadedFile,
    WebhookConfig,
)

T = TypeVar("T")


class TelegramCore(LocalServer):
    """The simulated Telegram world's state and the recording tests assert on."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        bot_id: int = 123456789,
        bot_username: str = "TryOnTestBot",
        privacy_mode: bool = True,
        can_join_groups: bool = True,
        can_read_all_group_messages: bool | None = None,
        supports_inline_queries: bool = False,
    ) -> None:
        super().__init__()
        self.token = token
        self.bot_id = bot_id
        self.bot_username = bot_username
        self.privacy_mode = privacy_mode
        # getMe flags (BotFather /setjoingroups, /setprivacy, /setinline); None: follows
        # privacy_mode, as on Telegram.
        self.can_join_groups = can_join_groups
        self.can_read_all_group_messages = can_read_all_group_messages
        self.supports_inline_queries = supports_inline_queries
        # Time source of `Call.time`, chat actions and the group limit window; tests may swap
        # in a fake clock to move the sliding window without sleeping.
        self.clock: Callable[[], float] = time.monotonic
        self.bot_user: JSON = {
            "id": bot_id,
            "is_bot": True,
            "first_name": "Try-On Test Bot",
            "username": bot_username,
        }

        # Recording
        self.calls: list[Call] = []
        self.sent: list[SentMessage] = []
        self.callback_answers: list[JSON] = []
        self.chat_actions: list[ChatActionRecord] = []
        self.commands: dict[tuple[str, str], list[JSON]] = {}
        self.descriptions: dict[str, str] = {}
        self.short_descriptions: dict[str, str] = {}
        self.downloads: list[str] = []  # file paths the bot downloaded
        self.undelivered: list[JSON] = []  # updates the bot never got (privacy, allowed_updates)
        self.delivered: list[JSON] = []  # updates queued for the bot, in order
        self.webhook = WebhookConfig()  # as last set by setWebhook/deleteWebhook
        self.webhook_history: list[WebhookConfig] = []  # every setWebhook/deleteWebhook
        self.webhook_posts: list[tuple[JSON, int | None]] = []  # (update, HTTP status or None)
        self.webhook_last_error: tuple[int, str] | None = None  # (unix date, message)
        self._pusher: asyncio.Task[None] | None = None
        self._webhook_session: aiohttp.ClientSession | None = None

        # World
        self.users: dict[int, JSON] = {}
        self.files: dict[str, StoredFile] = {}
        self._chats: dict[int, ChatState] = {}
        self._sent_index: dict[tuple[int, int], SentMessage] = {}
        self._queue: list[JSON] = []
        self._next_update_id = 10_001
        self._file_counter = 0
        self._open_queries: set[str] = set()
        self._allowed_updates: frozenset[str] = DEFAULT_ALLOWED_UPDATES
        self._poll_generation = 0

        # Faults
        self._flood_rules: list[FloodRule] = []
        self._fault_rules: list[FaultRule] = []
        self._group_limit: tuple[int, float] | None = None
        self._group_sends: dict[int, list[float]] = {}
        self.token_revoked = False

        # Server
        self._waiters: list[asyncio.Future[None]] = []
        self._closed = False
        self._methods: dict[str, Callable[[JSON], Awaitable[Any]]] = {
            name.removeprefix("_api_").lower(): getattr(self, name)
            for name in dir(self)
            if name.startswith("_api_")
        }

    @property
    def base_url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:PORT``; the bot uses ``{base_url}/bot``."""
        if not self._port:
            raise RuntimeError("FakeTelegram is not started")
        return self.origin

    async def before_close(self) -> None:
        self._closed = True
        self._notify()

    # -- waiting ---------------------------------------------------------------------------

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _changed(self, timeout: float) -> None:
        """Returns on the next recorded change, or after `timeout` seconds."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            pass
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float = 10.0) -> T:
        """Waits until `predicate()` is truthy and returns its value.

        Re-checked on every recorded call and every simulated user action.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"condition not met within {timeout} s; recent calls:\n{self.summary()}"
                )
            await self._changed(remaining)

    async def wait_for_message(
        self,
        chat_id: int,
        predicate: Callable[[SentMessage], bool] | None = None,
        *,
        thread_id: int | None = None,
        since: int = 0,
        timeout: float = 10.0,
    ) -> SentMessage:
        """The first message the bot sent to `chat_id` (from `sent[since:]`) matching."""

        def find() -> SentMessage | None:
            for message in self.sent[since:]:
                if message.chat_id != chat_id:
                    continue
                if thread_id is not None and message.thread_id != thread_id:
                    continue
                if predicate is None or predicate(message):
                    return message
            return None

        return await self.wait_for(find, timeout)

    async def wait_for_call(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        *,
        since: int = 0,
        timeout: float = 10.0,
    ) -> Call:
        """The first finished call of `method` (from `calls[since:]`) matching `predicate`."""

        def find() -> Call | None:
            for call in self.calls[since:]:
                same = call.method.lower() == method.lower() and call.status is not None
                if same and (predicate is None or predicate(call)):
                    return call
            return None

        return await self.wait_for(find, timeout)

    async def wait_consumed(self, timeout: float = 10.0) -> None:
        """Waits until the bot has confirmed every queued update."""
        await self.wait_for(lambda: self.pending_updates == 0, timeout)

    def summary(self, last: int = 25) -> str:
        """Human-readable list of recent calls (without getUpdates) for failure messages."""
        lines = []
        for call in [c for c in self.calls if c.method.lower() != "getupdates"][-last:]:
            shown = {
                k: (f"<{len(v.data)} bytes>" if isinstance(v, UploadedFile) else v)
                for k, v in call.params.items()
            }
            outcome = "pending" if call.status is None else str(call.status)
            if call.description:
                outcome += f" {call.description}"
            lines.append(f"  {call.method} {shown} -> {outcome}")
        lines.append(f"  pending updates: {self.pending_updates}")
        return "\n".join(lines) if lines else "  (no calls)"

    # -- recording helpers -------------------------------------------------------------------

    @property
    def pending_updates(self) -> int:
        """Updates queued for the bot and not yet confirmed by a getUpdates offset."""
        return len(self._queue)

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method.lower() == method.lower()]

    def messages_to(self, chat_id: int, thread_id: int | None = None) -> list[SentMessage]:
        """Messages the bot sent to a chat (only to one topic when `thread_id` is given)."""
        return [
            m
            for m in self.sent
            if m.chat_id == chat_id and (thread_id is None or m.thread_id == thread_id)
        ]

    def last_to(self, chat_id: int) -> SentMessage:
        messages = self.messages_to(chat_id)
        if not messages:
            raise AssertionError(f"the bot sent nothing to chat {chat_id}:\n{self.summary()}")
        return messages[-1]

    def commands_for(self, scope: str = "default", language_code: str = "") -> list[JSON]:
        """Commands set for a scope key ("default", "all_group_chats", "chat:<id>", ...)."""
        return self.commands.get((scope, language_code), [])

    def file(self, file_id: str) -> StoredFile:
        return self.files[file_id]

    # -- counters ------------------------------------------------------------------------

    def call_counts(self) -> Counter[str]:
        """Calls per method (lower-case name), every answer included."""
        return Counter(call.method.lower() for call in self.calls)

    def flood_counts(self) -> Counter[str]:
        """429 answers per method (lower-case name)."""
        return Counter(call.method.lower() for call in self.calls if call.status == 429)

    def calls_to(self, chat_id: int) -> list[Call]:
        """Every call whose ``chat_id`` is `chat_id`, in order."""
        return [call for call in self.calls if call.chat_id == chat_id]

    def forbidden_count(self, chat_id: int) -> int:
        """How many calls to `chat_id` were answered 403 (blocked, kicked)."""
        return sum(1 for call in self.calls_to(chat_id) if call.status == 403)

    def calls_after_forbidden(self, chat_id: int) -> int:
        """Calls to `chat_id` after the first one answered 403 (0 if none was)."""
        calls = self.calls_to(chat_id)
        first = next((i for i, call in enumerate(calls) if call.status == 403), None)
        return 0 if first is None else len(calls) - first - 1
