"""The one way out to Telegram: every send, edit and download goes through here.

It owns the flood budgets, the retries and the order in which sends go out. Nothing a
handler calls here waits out flood control (at most about a second for the bot's overall
rate): a message that must arrive (a prompt, a full-size file) is queued in its chat's
outbox and sent in the background once the chat's flood wait is over; a message that
may be dropped (an apology, a hint, a refusal) is dropped. Only the pipeline's notifier,
which runs in the background, waits for its result and failure notice (`deliver_*`).
Status edits and chat actions are a courtesy: skipped when a group is close to
Telegram's ~20 messages/minute limit or under a flood wait.

All sends share one overall budget (`SendRate`, under Telegram's ~30 messages/s) that
serves the most urgent first: prompts and results before notices, notices before
status edits. After a 403 (blocked, kicked, deactivated) a chat is marked unreachable:
every further call to it raises `ChatUnreachable` at once, without a request, until an
update from that chat clears the mark (`mark_reachable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dtm
import enum
import heapq
import itertools
import logging
import time
import warnings
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx
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
# Every call that targets a chat, across all chats, per second (Telegram allows ~30).
OVERALL_PER_SECOND = 28
# Chats remembered as unreachable (blocked the bot); the oldest marks are forgotten first.
MAX_UNREACHABLE = 100_000
# Per-chat counters are pruned of idle chats at most this often (seconds).
PRUNE_INTERVAL = 60.0


class Urgency(enum.IntEnum):
    """How a call is treated; lower is more urgent (served first by the overall rate)."""

    MUST = 0  # prompts, results, failure notices: they arrive, if need be later
    NOTICE = 1  # apologies, hints, refusals: dropped under flood control
    COURTESY = 2  # status edits, chat actions


class ChatUnreachable(Forbidden):
    """The chat refused the bot before (blocked, kicked, deactivated): no request was made."""

    def __init__(self, chat_id: int, reason: str) -> None:
        super().__init__(f"chat {chat_id} is unreachable: {reason}")
        self.chat_id = chat_id


def retry_after_seconds(error: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = error.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


class AmbiguousSend(TelegramError):
    """A send left but its answer was lost more often than allowed: it may have arrived."""


class ShuttingDown(TelegramError):
    """The bot is stopping: nothing waits on flood control or back-off any more."""


def is_ambiguous(error: NetworkError) -> bool:
    """Whether the request may have reached Telegram with no answer back (a read timeout,
    a connection lost after it was sent), as opposed to a failure to connect at all or an
    HTTP answer (a 5xx from the Bot API: Telegram answered, and did not post)."""
    cause = error.__cause__
    return isinstance(cause, httpx.HTTPError) and not isinstance(
        cause, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
    )


class ChatBudget:
    """Counts what the bot sends to each group in a sliding minute, and flood waits.

    Idle chats are pruned, so the dictionaries hold only chats active in the last minute
    (or still under a flood wait).
    """

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
        self._pruned_at = time.monotonic()

    def _recent(self, chat_id: int) -> deque[float]:
        sent = self._sent.setdefault(chat_id, deque())
        now = time.monotonic()
        while sent and now - sent[0] >= self.window:
            sent.popleft()
        return sent

    def record(self, chat_id: int) -> None:
        if chat_id < 0:
            self._recent(chat_id).append(time.monotonic())
        self._maybe_prune()

    def block(self, chat_id: int, seconds: float) -> None:
        until = time.monotonic() + seconds
        self._blocked_until[chat_id] = max(until, self._blocked_until.get(chat_id, 0.0))
        self._maybe_prune()

    def blocked_for(self, chat_id: int) -> float:
        until = self._blocked_until.get(chat_id)
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left <= 0:
            del self._blocked_until[chat_id]
            return 0.0
        return left

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

    def tracked_chats(self) -> int:
        return len(self._sent.keys() | self._blocked_until.keys())

    def prune(self) -> None:
        """Forgets chats with nothing in the window and no flood wait."""
        now = time.monotonic()
        self._pruned_at = now
        for chat_id in [
            c for c, sent in self._sent.items() if not sent or now - sent[-1] >= self.window
        ]:
            del self._sent[chat_id]
        for chat_id in [c for c, until in self._blocked_until.items() if until <= now]:
            del self._blocked_until[chat_id]

    def _maybe_prune(self) -> None:
        if time.monotonic() - self._pruned_at >= PRUNE_INTERVAL:
            self.prune()


class SendRate:
    """The bot's overall send rate (a sliding second), serving waiters by urgency.

    A call takes a slot at once when one is free and nobody is waiting; otherwise it
    queues, and freed slots go to the most urgent waiter first (then first come).
    """

    def __init__(self, per_second: int = OVERALL_PER_SECOND, window: float = 1.0) -> None:
        self.per_second = per_second
        self.window = window
        self._times: deque[float] = deque()
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    def _wait_time(self) -> float:
        now = time.monotonic()
        while self._times and now - self._times[0] >= self.window:
            self._times.popleft()
        if len(self._times) < self.per_second:
            return 0.0
        return self.window - (now - self._times[0])

    def try_take(self) -> bool:
        """A slot now, or False (for calls that are skipped rather than delayed)."""
        if self._waiters or self._wait_time() > 0:
            return False
        self._times.append(time.monotonic())
        return True

    async def take(self, urgency: Urgency = Urgency.MUST) -> None:
        if not self._waiters and self._wait_time() == 0:
            self._times.append(time.monotonic())
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (int(urgency), next(self._order), future))
        self._arm()
        await future

    def _arm(self) -> None:
        if self._timer is None and self._waiters:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(self._wait_time(), 0.001), self._release)

    def _release(self) -> None:
        self._timer = None
        while self._waiters and self._wait_time() == 0:
            _, _, future = heapq.heappop(self._waiters)
            if future.done():  # its caller gave up
                continue
            self._times.append(time.monotonic())
            future.set_result(None)
        self._arm()


class _Marks:
    """A bounded set of chat ids with a reason each (oldest forgotten first)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._marks: OrderedDict[int, str] = OrderedDict()

    def add(self, chat_id: int, reason: str) -> None:
        self._marks[chat_id] = reason
        self._marks.move_to_end(chat_id)
        while len(self._marks) > self.limit:
            self._marks.popitem(last=False)

    def get(self, chat_id: int) -> str | None:
        return self._marks.get(chat_id)

    def discard(self, chat_id: int) -> bool:
        return self._marks.pop(chat_id, None) is not None

    def __len__(self) -> int:
        return len(self._marks)


@dataclass
class _Queued:
    send: Callable[[], Awaitable[Message]]
    max_wait: float | None
    max_ambiguous: int | None = None
    future: asyncio.Future[Message] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


Markup = InlineKeyboardMarkup | ForceReply | None
Send = Callable[[], Awaitable[Message]]
SentListener = Callable[[int, int], None]


class TelegramGateway:
    def __init__(
        self,
        bot: Bot,
        budget: ChatBudget | None = None,
        *,
        retry: RetryPolicy | None = None,
        max_wait: float = 600.0,
        rate: SendRate | None = None,
    ) -> None:
        self.bot = bot
        self.budget = budget or ChatBudget()
        self.retry = retry or RetryPolicy(attempts=4, base_delay=1.0, max_delay=30.0)
        self.max_wait = max_wait
        self.rate = rate or SendRate()
        self._unreachable = _Marks(MAX_UNREACHABLE)
        self._outboxes: dict[int, deque[_Queued]] = {}
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._listeners: list[SentListener] = []
        self.closing = False  # set at shutdown: nothing waits on Telegram any more
        self._closing = asyncio.Event()

    def begin_shutdown(self) -> None:
        """Shutdown: sends that would wait (flood control, back-off) give up at once
        (ShuttingDown), and those already waiting stop waiting."""
        self.closing = True
        self._closing.set()

    async def _nap(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)
        if self.closing:
            raise ShuttingDown("stopping: not waiting for Telegram")

    # ---- chats that refuse the bot ------------------------------------------------------

    def is_unreachable(self, chat_id: int) -> bool:
        return self._unreachable.get(chat_id) is not None

    def mark_reachable(self, chat_id: int) -> None:
        """The chat wrote to the bot again: calls to it are made again."""
        if self._unreachable.discard(chat_id):
            log.info("Chat %s is reachable again", chat_id)

    def _check(self, chat_id: int) -> None:
        reason = self._unreachable.get(chat_id)
        if reason is not None:
            raise ChatUnreachable(chat_id, reason)

    def _refused(self, chat_id: int, error: Forbidden) -> None:
        if isinstance(error, ChatUnreachable) or self.is_unreachable(chat_id):
            return
        log.warning("Chat %s refuses the bot (%s): no more calls until it writes", chat_id, error)
        self._unreachable.add(chat_id, error.message)

    # ---- listeners ---------------------------------------------------------------------

    def on_sent(self, listener: SentListener) -> None:
        """`listener(chat_id, message_id)` after every message Telegram accepted."""
        self._listeners.append(listener)

    # ---- the calls ---------------------------------------------------------------------

    async def _attempt(
        self,
        chat_id: int,
        send: Callable[[], Awaitable[T]],
        urgency: Urgency,
        *,
        new_message: bool = True,
    ) -> T:
        """One request: refused at once for an unreachable chat; a 403 marks the chat."""
        self._check(chat_id)
        await self.rate.take(urgency)
        self._check(chat_id)
        try:
            result = await send()
        except Forbidden as error:
            self._refused(chat_id, error)
            raise
        except RetryAfter as error:
            wait = retry_after_seconds(error)
            self.budget.block(chat_id, wait)
            log.warning("Flood control in chat %s: %.1f s", chat_id, wait)
            raise
        self.budget.record(chat_id)
        if new_message and isinstance(result, Message):
            for listener in self._listeners:
                listener(result.chat_id, result.message_id)
        return result

    async def reliably(
        self,
        chat_id: int,
        send: Callable[[], Awaitable[T]],
        max_wait: float | None = None,
        urgency: Urgency = Urgency.MUST,
        max_ambiguous: int | None = None,
    ) -> T:
        """Retries one send through flood waits and network faults until Telegram accepts it.

        For background tasks only (it may wait minutes). Gives up on a permanent error
        (bad request, bot blocked, chat migrated), once the next wait would pass
        `max_wait` seconds (checked before any wait), at shutdown instead of waiting
        (ShuttingDown), or with `max_ambiguous`, after that many resends of a send that
        may have arrived (AmbiguousSend).
        """
        deadline = time.monotonic() + (self.max_wait if max_wait is None else max_wait)
        attempt = ambiguous = 0
        while True:
            wait = self.budget.blocked_for(chat_id)
            if not wait:
                try:
                    return await self._attempt(chat_id, send, urgency)
                except RetryAfter as error:
                    wait = retry_after_seconds(error)
                except (BadRequest, Forbidden):
                    raise
                except NetworkError as error:  # includes TimedOut
                    attempt += 1
                    wait = self.retry.delay(attempt)
                    if max_ambiguous is not None and is_ambiguous(error):
                        ambiguous += 1
                        if ambiguous > max_ambiguous:
                            raise AmbiguousSend(
                                f"no answer to a send to chat {chat_id}: {error}"
                            ) from error
                        log.warning(
                            "Send to chat %s may have arrived (%s): sending once more, so a "
                            "duplicate is possible",
                            chat_id, error,
                        )  # fmt: skip
                    else:
                        log.warning("Telegram network error (%s); retrying in %.1f s", error, wait)
            if self.closing:
                raise ShuttingDown(f"stopping: not waiting for chat {chat_id}")
            if time.monotonic() + wait > deadline:
                raise TelegramError("gave up waiting for Telegram")
            await self._nap(wait)

    async def send(
        self,
        chat_id: int,
        send: Send,
        *,
        urgency: Urgency = Urgency.MUST,
        max_wait: float | None = None,
    ) -> Message | asyncio.Future[Message] | None:
        """Sends now if the chat is free; never waits out flood control.

        A `MUST` message that meets flood control (or a network fault) goes to the chat's
        outbox: a future for it is returned. A `NOTICE` is dropped then (None).
        Raises ChatUnreachable for a chat that refused the bot; BadRequest as Telegram does.
        """
        self._check(chat_id)
        busy = self.budget.blocked_for(chat_id) > 0 or chat_id in self._outboxes
        if busy:
            return self._queue_or_drop(chat_id, send, urgency, max_wait, "under flood control")
        try:
            return await self._attempt(chat_id, send, urgency)
        except RetryAfter:
            return self._queue_or_drop(chat_id, send, urgency, max_wait, "flood control")
        except BadRequest:  # a NetworkError in PTB's hierarchy, but permanent
            raise
        except NetworkError as error:  # includes TimedOut
            return self._queue_or_drop(chat_id, send, urgency, max_wait, repr(error))

    def _queue_or_drop(
        self, chat_id: int, send: Send, urgency: Urgency, max_wait: float | None, why: str
    ) -> asyncio.Future[Message] | None:
        if urgency is not Urgency.MUST or self.closing:
            log.info("Dropped a message to chat %s (%s)", chat_id, why)
            return None
        log.info("Queued a message to chat %s (%s)", chat_id, why)
        return self.queue(chat_id, send, max_wait)

    def queue(
        self,
        chat_id: int,
        send: Send,
        max_wait: float | None = None,
        max_ambiguous: int | None = None,
    ) -> asyncio.Future[Message]:
        """Sends in the background, after whatever the chat's outbox already holds."""
        item = _Queued(send, max_wait, max_ambiguous)
        item.future.add_done_callback(_retrieved)  # nobody may be waiting for it
        self._outboxes.setdefault(chat_id, deque()).append(item)
        if chat_id not in self._workers:
            self._workers[chat_id] = asyncio.create_task(
                self._drain(chat_id), name=f"outbox-{chat_id}"
            )
        return item.future

    async def _drain(self, chat_id: int) -> None:
        box = self._outboxes[chat_id]
        try:
            while box:
                item = box[0]
                if item.future.cancelled():  # no longer wanted (a status line of a finished job)
                    box.popleft()
                    continue
                try:
                    message = await self.reliably(
                        chat_id, item.send, item.max_wait, max_ambiguous=item.max_ambiguous
                    )
                except Forbidden as error:
                    for queued in box:
                        if not queued.future.done():
                            queued.future.set_exception(error)
                    box.clear()
                    break
                except Exception as error:  # one message given up; the rest still go
                    log.warning("Gave up a queued message to chat %s: %r", chat_id, error)
                    if not item.future.done():
                        item.future.set_exception(error)
                else:
                    if not item.future.done():
                        item.future.set_result(message)
                box.popleft()
        finally:
            for queued in box:
                queued.future.cancel()
            self._outboxes.pop(chat_id, None)
            self._workers.pop(chat_id, None)

    async def close(self) -> None:
        """Shutdown: queued messages still in flood waits are given up."""
        self.begin_shutdown()
        workers = list(self._workers.values())
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    def queued(self) -> int:
        return sum(len(box) for box in self._outboxes.values())

    # ---- messages ----------------------------------------------------------------------

    def text_sender(
        self,
        chat_id: int,
        text: str,
        *,
        thread_id: int | None = None,
        reply_to: int | None = None,
        markup: Markup = None,
        html: bool = False,
    ) -> Send:
        return lambda: self.bot.send_message(
            chat_id,
            text,
            parse_mode=ParseMode.HTML if html else None,
            message_thread_id=thread_id,
            reply_parameters=_reply(reply_to),
            reply_markup=markup,
        )

    def image_sender(
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
    ) -> Send:
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

        return send

    async def send_text(
        self,
        chat_id: int,
        text: str,
        *,
        thread_id: int | None = None,
        reply_to: int | None = None,
        markup: Markup = None,
        html: bool = False,
        urgency: Urgency = Urgency.MUST,
        max_wait: float | None = None,
    ) -> Message | None:
        """For handlers: sent now, or (under flood control) queued or dropped; see `send`.
        Returns the message if it was sent now."""
        sender = self.text_sender(
            chat_id, text, thread_id=thread_id, reply_to=reply_to, markup=markup, html=html
        )
        sent = await self.send(chat_id, sender, urgency=urgency, max_wait=max_wait)
        return sent if isinstance(sent, Message) else None

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
        urgency: Urgency = Urgency.MUST,
        max_wait: float | None = None,
    ) -> Message | None:
        """For handlers, like `send_text`."""
        sender = self.image_sender(
            chat_id,
            image,
            caption,
            thread_id=thread_id,
            reply_to=reply_to,
            markup=markup,
            as_document=as_document,
            filename=filename,
        )
        sent = await self.send(chat_id, sender, urgency=urgency, max_wait=max_wait)
        return sent if isinstance(sent, Message) else None

    async def deliver(
        self,
        chat_id: int,
        send: Send,
        max_wait: float | None = None,
        max_ambiguous: int | None = None,
    ) -> Message:
        """For background tasks (the pipeline): waits until Telegram accepts the message,
        behind whatever the chat's outbox holds."""
        if chat_id in self._outboxes:
            return await self.queue(chat_id, send, max_wait, max_ambiguous)
        return await self.reliably(chat_id, send, max_wait, max_ambiguous=max_ambiguous)

    async def edit_status(self, chat_id: int, message_id: int, text: str) -> bool:
        """Best effort: skipped (False) when the chat is short of budget or flood-limited."""
        if self.is_unreachable(chat_id) or not self.budget.take_courtesy(chat_id):
            return False
        if not self.rate.try_take():
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
        except Forbidden as error:
            self._refused(chat_id, error)
            return False
        except NetworkError:
            return False
        self.budget.record(chat_id)
        return True

    async def _best_effort(
        self, chat_id: int, what: str, call: Callable[[], Awaitable[object]]
    ) -> bool:
        """One try, no waiting: skipped under flood control or for an unreachable chat."""
        if self.is_unreachable(chat_id) or self.budget.blocked_for(chat_id) > 0:
            return False
        try:
            await self._attempt(chat_id, call, Urgency.NOTICE, new_message=False)
        except TelegramError as error:
            log.info("Could not %s in chat %s: %s", what, chat_id, error)
            return False
        return True

    async def edit_markup(
        self, message: Message, markup: InlineKeyboardMarkup | None = None
    ) -> None:
        """Removes (or replaces) a message's buttons; best effort, counted in the budget."""
        await self._best_effort(
            message.chat_id, "edit buttons", lambda: message.edit_reply_markup(markup)
        )

    async def edit_caption(self, message: Message, caption: str) -> None:
        await self._best_effort(
            message.chat_id, "edit a caption", lambda: message.edit_caption(caption)
        )

    async def delete(self, chat_id: int, message_id: int) -> None:
        await self._best_effort(
            chat_id,
            f"delete message {message_id}",
            lambda: self.bot.delete_message(chat_id, message_id),
        )

    async def chat_action(self, chat_id: int, thread_id: int | None) -> None:
        if self.is_unreachable(chat_id):
            return
        if not self.budget.take_courtesy(chat_id, reserve=GROUP_RESERVE * 2):
            return
        if not self.rate.try_take():
            return
        try:
            await self.bot.send_chat_action(
                chat_id, ChatAction.UPLOAD_PHOTO, message_thread_id=thread_id
            )
        except Forbidden as error:
            self._refused(chat_id, error)
            return
        except RetryAfter as error:
            self.budget.block(chat_id, retry_after_seconds(error))
            return
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


def _retrieved(future: asyncio.Future[Message]) -> None:
    if not future.cancelled():
        future.exception()


def _reply(message_id: int | None) -> ReplyParameters | None:
    if message_id is None:
        return None
    return ReplyParameters(message_id=message_id, allow_sending_without_reply=True)
