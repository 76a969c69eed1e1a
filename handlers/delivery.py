"""The pipeline's Notifier on Telegram: the status line, the result, the failure notice.

Telegram's part of a try-on lives here: one status message edited through the stages
(with a chat action while it works), the result as a photo or, when Telegram would
refuse it as a photo, as a file, and a group that became a supergroup followed to its
new chat id.

`started` runs inside a handler and never waits out flood control: under it, the status
message is queued in the chat's outbox and the ticker picks it up once it is out. The
result and the failure notice wait as long as it takes (the pipeline runs in the
background). A chat that refused the bot (403) gets no further call for the job: the
gateway raises `ChatUnreachable` at once, which `deliver` and `failed` turn into
`Undeliverable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from PIL import Image
from telegram import Message
from telegram.error import BadRequest, ChatMigrated, Forbidden, TelegramError

from handlers.gateway import AmbiguousSend, TelegramGateway
from handlers.keyboards import failure_markup, result_markup
from handlers.texts import Texts
from services.model import FailureKind, Job, JobKind, JobState
from services.tryon.features import Features
from services.tryon.hd import can_refine
from services.tryon.ports import (
    DeliveryAmbiguous,
    DeliveryDeferred,
    Receipt,
    Stage,
    Undeliverable,
    Unreachable,
)

log = logging.getLogger(__name__)

MAX_PHOTO_BYTES = 10 * 1024 * 1024  # sendPhoto limits; bigger results go as a document
MAX_PHOTO_SIDES = 10_000
STATUS_MAX_WAIT = 3.0  # the status line is a courtesy: never wait out flood control for it
# A closed or deleted forum topic: the message goes to the chat's general thread instead.
GONE_TOPIC = ("topic_closed", "topic_deleted", "thread not found")
WORKING_STAGES = frozenset({Stage.PREPARING, Stage.SUBMITTING, Stage.GENERATING, Stage.SENDING})
FINAL_STATES = frozenset(
    {JobState.DELIVERED, JobState.FAILED, JobState.CANCELED, JobState.INTERRUPTED}
)


@dataclass(frozen=True)
class StatusConfig:
    status_interval: float = 5.0
    chat_action_interval: float = 4.5


def elapsed_text(texts: Texts, lang: str, seconds: float) -> str:
    return texts.get(lang, "elapsed", time=texts.duration(lang, seconds))


def status_text(
    texts: Texts, lang: str, stage: Stage, elapsed: float, position: int | None = None
) -> str:
    line = texts.get(lang, f"stage_{stage.value}", position=position or 1)
    return f"{line}\n{elapsed_text(texts, lang, elapsed)}"


def result_caption(texts: Texts, job: Job) -> str:
    """The result's caption; says so when a kept garment was not found (the model picked)."""
    caption = texts.get(job.lang, "result_caption")
    if job.kept_missing:
        caption = f"{texts.get(job.lang, f'kept_missing_{job.keep}')}\n\n{caption}"
    return caption


def failure_text(texts: Texts, lang: str, kind: FailureKind) -> str:
    return texts.get(lang, f"fail_{kind.value}")


class StatusTicker:
    """Keeps one status message per job current: stage, place in line, elapsed time.

    A new stage is shown at once; a new place in line or elapsed time waits for the next
    status interval, so a moving line does not turn into a burst of edits.
    """

    def __init__(self, notifier: TelegramNotifier, job: Job) -> None:
        self._notifier = notifier
        self.job = job
        self.stage = Stage.PREPARING
        self.position: int | None = None
        self._changed = asyncio.Event()
        self._last_text = ""
        self._shown_stage: Stage | None = None
        self._last_edit = 0.0
        self._last_action = 0.0
        self.task = asyncio.create_task(self._run(), name=f"status-{job.id}")

    def set(self, job: Job, stage: Stage, position: int | None) -> None:
        self.job = job
        if stage != self.stage:
            self._changed.set()
        self.stage, self.position = stage, position

    async def _run(self) -> None:
        interval = self._notifier.config.status_interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), interval)
            self._changed.clear()
            await self.tick()

    async def tick(self) -> None:
        job, notifier = self.job, self._notifier
        gateway, config = notifier.gateway, notifier.config
        now = time.monotonic()
        working = self.stage in WORKING_STAGES
        if working and now - self._last_action >= config.chat_action_interval:
            self._last_action = now
            await gateway.chat_action(job.chat_id, job.thread_id)
        status_id = notifier.status_message_id(job)
        if status_id is None:
            return
        due = self.stage != self._shown_stage or (now - self._last_edit >= config.status_interval)
        text = status_text(
            notifier.texts, job.lang, self.stage, time.time() - job.created_at, self.position
        )
        if (
            due
            and text != self._last_text
            and await gateway.edit_status(job.chat_id, status_id, text)
        ):
            self._last_text, self._shown_stage, self._last_edit = text, self.stage, now


class TelegramNotifier:
    def __init__(
        self,
        gateway: TelegramGateway,
        texts: Texts,
        config: StatusConfig = StatusConfig(),
        features: Features | None = None,
    ) -> None:
        self.gateway = gateway
        self.texts = texts
        self.config = config
        self.features = features or Features()
        self._tickers: dict[str, StatusTicker] = {}
        self._late_status: dict[str, asyncio.Future[Message]] = {}

    async def started(self, job: Job) -> Receipt:
        sender = self.gateway.text_sender(
            job.chat_id,
            status_text(self.texts, job.lang, Stage.PREPARING, 0),
            thread_id=job.thread_id,
            reply_to=job.request_message_id,
        )
        sent = await self.gateway.send(job.chat_id, sender, max_wait=STATUS_MAX_WAIT)
        if isinstance(sent, Message):
            return Receipt(sent.chat_id, sent.message_id)
        if sent is not None:  # queued behind a flood wait
            self._late_status[job.id] = sent
        return Receipt(job.chat_id, None)

    def status_message_id(self, job: Job) -> int | None:
        """The job's status message: recorded, or sent late from the outbox."""
        if job.status_message_id is not None:
            return job.status_message_id
        late = self._late_status.get(job.id)
        if late is None or not late.done() or late.cancelled() or late.exception():
            return None
        return late.result().message_id

    def stage(self, job: Job, stage: Stage, position: int | None = None) -> None:
        ticker = self._tickers.get(job.id)
        if ticker is None:
            ticker = self._tickers[job.id] = StatusTicker(self, job)
        ticker.set(job, stage, position)

    async def deliver(self, job: Job, image: bytes) -> Receipt:
        if job.kind is JobKind.REFINE:
            return await self._deliver_hd(job, image)
        caption = result_caption(self.texts, job)
        as_document = not fits_send_photo(image)
        hd = self.features.hd and can_refine(job)

        async def send(j: Job) -> Message:
            message = await self.gateway.deliver(
                j.chat_id,
                self.gateway.image_sender(
                    j.chat_id,
                    image,
                    caption,
                    thread_id=j.thread_id,
                    reply_to=j.request_message_id,
                    markup=result_markup(
                        self.texts, j.lang, j.id, j.user_id, hd=hd, compare=j.chat_id < 0
                    ),
                    as_document=as_document,
                ),
                max_ambiguous=1,  # a lost answer: resent at most once (a duplicate > a loss)
            )
            await self.result_sent(j, message)
            return message

        try:
            return await self._to_chat(job, send)
        except AmbiguousSend as error:
            raise DeliveryAmbiguous(str(error)) from error
        except Forbidden as error:
            raise Unreachable(str(error)) from error
        except BadRequest as error:
            log.error("job %s: result undeliverable: %s", job.id, error)
            raise Undeliverable(str(error)) from error
        except TelegramError as error:  # an outage, flood control beyond the wait, shutdown
            raise DeliveryDeferred(str(error)) from error

    async def _deliver_hd(self, job: Job, image: bytes) -> Receipt:
        """HD comes as a document (every pixel), replying to the result it refines."""
        try:
            return await self._to_chat(
                job,
                lambda j: self.gateway.deliver(
                    j.chat_id,
                    self.gateway.image_sender(
                        j.chat_id,
                        image,
                        self.texts.get(j.lang, "hd_caption"),
                        thread_id=j.thread_id,
                        reply_to=j.request_message_id,
                        markup=None,
                        as_document=True,
                        filename="tryon-hd.jpg",
                    ),
                    max_ambiguous=1,
                ),
            )
        except AmbiguousSend as error:
            raise DeliveryAmbiguous(str(error)) from error
        except Forbidden as error:
            raise Unreachable(str(error)) from error
        except BadRequest as error:
            log.error("job %s: HD result undeliverable: %s", job.id, error)
            raise Undeliverable(str(error)) from error
        except TelegramError as error:  # an outage, flood control beyond the wait, shutdown
            raise DeliveryDeferred(str(error)) from error

    async def result_sent(self, job: Job, message: Message) -> None:
        """A result reached the chat (a hook: batches.py keeps its file id for /history)."""

    async def failed(self, job: Job, kind: FailureKind) -> Receipt:
        try:
            return await self._to_chat(
                job,
                lambda j: self.gateway.deliver(
                    j.chat_id,
                    self.gateway.text_sender(
                        j.chat_id,
                        failure_text(self.texts, j.lang, kind),
                        thread_id=j.thread_id,
                        reply_to=j.request_message_id,
                        markup=failure_markup(self.texts, j.lang, kind, j.id, j.user_id),
                    ),
                ),
            )
        except Forbidden as error:
            raise Unreachable(str(error)) from error
        except BadRequest as error:
            raise Undeliverable(str(error)) from error

    async def finished(self, job: Job) -> None:
        ticker = self._tickers.pop(job.id, None)
        if ticker is not None:
            ticker.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker.task
        status_id = self.status_message_id(job)
        late = self._late_status.pop(job.id, None)
        if late is not None and not late.done():
            late.cancel()  # still queued: no longer worth sending
        if job.state in FINAL_STATES and status_id is not None:
            await self.gateway.delete(job.chat_id, status_id)

    async def _to_chat(self, job: Job, send: Callable[[Job], Awaitable[Message]]) -> Receipt:
        """Sends to the job's chat, following it if the group became a supergroup, and to
        the chat's general thread if the job's forum topic was closed or deleted."""
        try:
            try:
                message = await send(job)
            except ChatMigrated as migrated:
                # Message ids of the old group mean nothing in the new one.
                job = _moved(job, migrated.new_chat_id)
                message = await send(job)
        except BadRequest as error:
            if job.thread_id is None or not any(m in error.message.lower() for m in GONE_TOPIC):
                raise
            log.warning(
                "job %s: topic %s of chat %s is gone (%s): using the general thread",
                job.id, job.thread_id, job.chat_id, error.message,
            )  # fmt: skip
            message = await send(replace(job, thread_id=None, request_message_id=None))
        return Receipt(message.chat_id, message.message_id)


def _moved(job: Job, chat_id: int) -> Job:
    return replace(job, chat_id=chat_id, request_message_id=None, status_message_id=None)


def fits_send_photo(data: bytes) -> bool:
    if len(data) > MAX_PHOTO_BYTES:
        return False
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except OSError:
        return False
    return width + height <= MAX_PHOTO_SIDES and max(width, height) <= 20 * min(width, height)
