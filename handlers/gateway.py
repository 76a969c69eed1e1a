"""The one way out to Telegram: every send, edit and download goes through here.

It owns the per-chat flood budgets and the retries. Results, notices and prompts are
retried through flood control and network faults (prompts within a short bound: the
user is waiting on them). Status edits and chat actions are a courtesy: they are
skipped when a group is close to Telegram's ~20 messages/minute limit or under a
flood wait, so they never crowd out what must arrive.
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import logging
import time
import warnings
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

from telegram import Bot, ForceReply, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from services.images.normalize import ImageRejected, RejectReason
from services.retry import RetryPolicy
from services.tryon.ports import FileUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

GROUP_LIMIT_PER_MINUTE = 20
# Sends kept free in a group's minute for prompts, results and failure notices.
GROUP_RESERVE = 6
# Status edits and chat actions across all chats, per second: well under Telegram's ~30
# messages/s, leaving the rest for prompts and results.
COURTESY_PER_SECOND = 12


def retry_after_seconds(error: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = error.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


class ChatBudget:
    """Counts what the bot sends to each group in a sliding minute, and flood waits."""

    def __init__(
        self,
        per_minute: int = GROUP_LIMIT_PER_MINUTE,
        window: float = 60.0,
        courtesy_per_second: int = COURTESY_PER_SECOND,
    ) -> None:
        self.per_minute = per_minute
        self.window = window
        self.courtesy_per_second = courtesy_per_second
        self._sent: dict[int, deque[float]] = {}
        self._blocked_until: dict[int, float] = {}
        self._courtesy: deque[float] = deque()

    def _recent(self, chat_id: int) -> deque[float]:
        sent = self._sent.setdefault(chat_id, deque())
        now = time.monotonic()
        while sent and now - sent[0] >= self.window:
            sent.popleft()
        return sent

    def record(self, chat_id: int) -> None:
        if chat_id < 0:
            self._recent(chat_id).append(time.monotonic())

    def block(self, chat_id: int, seconds: float) -> None:
        self._blocked_until[chat_id] = time.monotonic() + seconds

    def blocked_for(self, chat_id: int) -> float:
        return max(0.0, self._blocked_until.get(chat_id, 0.0) - time.monotonic())

    def take_courtesy(self, chat_id: int, reserve: int = GROUP_RESERVE) -> bool:
        """Claims room for one non-essential call (a status edit, a chat action), if any."""
        now = time.monotonic()
        while self._courtesy and now - self._courtesy[0] >= 1.0:
            self._courtesy.popleft()
        if len(self._courtesy) >= self.courtesy_per_second or not self.can_spend(chat_id, reserve):
            return False
        self._courtesy.append(now)
        return True

    def can_spend(self, chat_id: int, reserve: int = GROUP_RESERVE) -> bool:
        """Whether a non-essential message fits; private chats only check flood waits."""
        if self.blocked_for(chat_id) > 0:
            return False
        if chat_id > 0:
            return True
        return len(self._recent(chat_id)) < self.per_minute - reserve


Markup = InlineKeyboardMarkup | ForceReply | None


class TelegramGateway:
    def __init__(
        self,
        bot: Bot,
        budget: ChatBudget | None = None,
        *,
        retry: RetryPolicy | None = None,
        max_wait: float = 600.0,
    ) -> None:
        self.bot = bot
        self.budget = budget or ChatBudget()
        self.retry = retry or RetryPolicy(attempts=4, base_delay=1.0, max_delay=30.0)
        self.max_wait = max_wait

    async def reliably(
        self, chat_id: int, send: Callable[[], Awaitable[T]], max_wait: float | None = None
    ) -> T:
        """Retries one send through flood waits and network faults until Telegram accepts it.

        Gives up only on a permanent error (bad request, bot blocked, chat migrated) or
        after `max_wait` seconds.
        """
        deadline = time.monotonic() + (self.max_wait if max_wait is None else max_wait)
        attempt = 0
        while True:
            wait = self.budget.blocked_for(chat_id)
            if wait:
                await asyncio.sleep(wait)
            try:
                result = await send()
            except RetryAfter as error:
                wait = retry_after_seconds(error)
                self.budget.block(chat_id, wait)
                log.warning("Flood control in chat %s: waiting %.1f s", chat_id, wait)
            except (BadRequest, Forbidden):
                raise
            except NetworkError as error:  # includes TimedOut
                attempt += 1
                wait = self.retry.delay(attempt)
                log.warning("Telegram network error (%s); retrying in %.1f s", error, wait)
            else:
                self.budget.record(chat_id)
                return result
            if time.monotonic() + wait > deadline:
                raise TelegramError("gave up waiting for Telegram")
            await asyncio.sleep(wait)

    async def send_text(
        self,
        chat_id: int,
        text: str,
        *,
        thread_id: int | None = None,
        reply_to: int | None = None,
        markup: Markup = None,
        html: bool = False,
        max_wait: float | None = None,
    ) -> Message:
        return await self.reliably(
            chat_id,
            lambda: self.bot.send_message(
                chat_id,
                text,
                parse_mode=ParseMode.HTML if html else None,
                message_thread_id=thread_id,
                reply_parameters=_reply(reply_to),
                reply_markup=markup,
            ),
            max_wait,
        )

    async def send_image(
        self,
        chat_id: int,
        image: bytes | str,
        caption: str | None,
        *,
        thread_id: int | None,
        reply_to: int | None,
        markup: InlineKeyboardMarkup | None,
        as_document: bool = False,
        filename: str = "tryon.jpg",
        max_wait: float | None = None,
    ) -> Message:
        """A photo, or the same image as a file (documents keep every pixel)."""

        async def send() -> Message:
            if as_document:
                return await self.bot.send_document(
                    chat_id,
                    image,
                    filename=filename,
                    caption=caption,
                    message_thread_id=thread_id,
                    reply_parameters=_reply(reply_to),
                    reply_markup=markup,
                )
            return await self.bot.send_photo(
                chat_id,
                image,
                caption=caption,
                filename=filename,
                message_thread_id=thread_id,
                reply_parameters=_reply(reply_to),
                reply_markup=markup,
            )

        return await self.reliably(chat_id, send, max_wait)

    async def edit_status(self, chat_id: int, message_id: int, text: str) -> bool:
        """Best effort: skipped (False) when the chat is short of budget or flood-limited."""
        if not self.budget.take_courtesy(chat_id):
            return False
        try:
            await self.bot.edit_message_text(text, chat_id=chat_id, message_id=message_id)
        except RetryAfter as error:
            self.budget.block(chat_id, retry_after_seconds(error))
            return False
        except BadRequest as error:
            if "not modified" not in error.message.lower():
                log.info("Status edit refused in chat %s: %s", chat_id, error.message)
            return False
        except (NetworkError, Forbidden):
            return False
        self.budget.record(chat_id)
        return True

    async def edit_markup(
        self, message: Message, markup: InlineKeyboardMarkup | None = None
    ) -> None:
        """Removes (or replaces) a message's buttons; best effort, counted in the budget."""
        try:
            await message.edit_reply_markup(markup)
        except TelegramError as error:
            log.info("Could not edit buttons in chat %s: %s", message.chat_id, error)
            return
        self.budget.record(message.chat_id)

    async def edit_caption(self, message: Message, caption: str) -> None:
        try:
            await message.edit_caption(caption)
        except TelegramError as error:
            log.info("Could not edit a caption in chat %s: %s", message.chat_id, error)
            return
        self.budget.record(message.chat_id)

    async def delete(self, chat_id: int, message_id: int) -> None:
        try:
            await self.bot.delete_message(chat_id, message_id)
        except TelegramError as error:
            log.info("Could not delete message %s in chat %s: %s", message_id, chat_id, error)

    async def chat_action(self, chat_id: int, thread_id: int | None) -> None:
        if not self.budget.take_courtesy(chat_id, reserve=GROUP_RESERVE * 2):
            return
        try:
            await self.bot.send_chat_action(
                chat_id, ChatAction.UPLOAD_PHOTO, message_thread_id=thread_id
            )
        except TelegramError:
            return
        self.budget.record(chat_id)


class TelegramFiles:
    """The pipeline's FileSource: a Telegram file, by id, into memory."""

    def __init__(self, bot: Bot, retry: RetryPolicy | None = None) -> None:
        self.bot = bot
        self.retry = retry or RetryPolicy(attempts=4, base_delay=1.0, max_delay=30.0)

    async def download(self, file_id: str) -> bytearray:
        """Downloads a Telegram file into memory, retrying transient faults."""
        attempt = 0
        while True:
            try:
                file = await self.bot.get_file(file_id)
                return await file.download_as_bytearray()  # no extra copy: images are big
            except BadRequest as error:
                if "too big" in error.message.lower():
                    raise ImageRejected(RejectReason.FILE_TOO_LARGE) from None
                raise FileUnavailable(error.message) from error
            except RetryAfter as error:
                await asyncio.sleep(retry_after_seconds(error))
            except (NetworkError, Forbidden) as error:
                attempt += 1
                if attempt >= self.retry.attempts or isinstance(error, Forbidden):
                    raise FileUnavailable(str(error)) from error
                await asyncio.sleep(self.retry.delay(attempt))


def _reply(message_id: int | None) -> ReplyParameters | None:
    if message_id is None:
        return None
    return ReplyParameters(message_id=message_id, allow_sending_without_reply=True)
