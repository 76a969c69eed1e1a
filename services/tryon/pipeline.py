"""The try-on pipeline: one job from its inputs to the picture in the chat.

    Telegram file → image check → upload      (ImagePreparer.prepare, per image, concurrently)
    wait for a slot → submit                  (TryOnScheduler.slot, DashScopeClient.submit)
    poll the task                             (DashScopeClient.query)
    download the result → send it             (DashScopeClient.download_result, Messenger)

Every step is recorded in the jobs table before the next one starts, so a restart
resumes each job where it stopped, and a submit is never repeated silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import io
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from PIL import Image
from telegram import Message
from telegram.error import BadRequest, ChatMigrated, Forbidden, TelegramError

from handlers.delivery import Messenger
from handlers.keyboards import failure_markup, failure_text, result_markup, status_text
from services.dashscope import (
    DashScopeClient,
    DashScopeError,
    ErrorKind,
    SubmitOutcomeUnknown,
    TaskState,
)
from services.i18n import Texts
from services.images.intake import ImagePreparer
from services.images.normalize import ImageRejected
from services.model import InputImage, Job, JobState
from services.storage.jobs import JobStore
from services.tryon.quota import Refusal
from services.tryon.scheduler import TryOnScheduler

log = logging.getLogger(__name__)

MAX_PHOTO_BYTES = 10 * 1024 * 1024  # sendPhoto limits; bigger results go as a document
MAX_PHOTO_SIDES = 10_000


class Failure(Exception):
    """Ends a job with a message the user can act on; `kind` selects the message."""

    def __init__(self, kind: str, code: str | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.code = code


class CancelOutcome(enum.Enum):
    CANCELED = "canceled"
    TOO_LATE = "too_late"  # DashScope is already generating it; the result will come
    SUBMITTING = "submitting"


@dataclass(frozen=True)
class RunnerConfig:
    poll_interval: float = 0.5
    task_deadline: float = 600.0
    status_interval: float = 5.0
    chat_action_interval: float = 4.5
    shutdown_grace: float = 6.0


def failure_kind(error: BaseException) -> str:
    if isinstance(error, Failure):
        return error.kind
    if isinstance(error, ImageRejected):
        return f"image_{error.reason.name.lower()}"
    if isinstance(error, SubmitOutcomeUnknown):
        return "submit_unknown"
    if isinstance(error, DashScopeError):
        return error.kind.name.lower()
    if isinstance(error, TelegramError):
        return "telegram"
    return "unknown"


class StatusTicker:
    """Keeps one status message per job current: stage, place in line, elapsed time.

    A new stage is shown at once; a new place in line or elapsed time waits for the next
    status interval, so a moving line does not turn into a burst of edits.
    """

    WORKING_STAGES = frozenset({"preparing", "submitting", "generating", "sending"})

    def __init__(self, runner: TryOnRunner, job: Job) -> None:
        self._runner = runner
        self.job = job
        self.stage = "preparing"
        self.position: int | None = None
        self._changed = asyncio.Event()
        self._last_text = ""
        self._shown_stage = ""
        self._last_edit = 0.0
        self._last_action = 0.0

    def set(self, stage: str, position: int | None = None) -> None:
        if stage != self.stage:
            self._changed.set()
        self.stage, self.position = stage, position

    async def run(self) -> None:
        cfg = self._runner.config
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), cfg.status_interval)
            self._changed.clear()
            await self.tick()

    async def tick(self) -> None:
        job, runner = self.job, self._runner
        now = time.monotonic()
        working = self.stage in self.WORKING_STAGES
        if working and now - self._last_action >= runner.config.chat_action_interval:
            self._last_action = now
            await runner.messenger.chat_action(job.chat_id, job.thread_id)
        if job.status_message_id is None:
            return
        due = self.stage != self._shown_stage or (
            now - self._last_edit >= runner.config.status_interval
        )
        text = status_text(
            runner.texts, job.lang, self.stage, time.time() - job.created_at, self.position
        )
        if (
            due
            and text != self._last_text
            and await runner.messenger.edit_status(job.chat_id, job.status_message_id, text)
        ):
            self._last_text, self._shown_stage, self._last_edit = text, self.stage, now


class TryOnRunner:
    def __init__(
        self,
        *,
        store: JobStore,
        preparer: ImagePreparer,
        client: DashScopeClient,
        scheduler: TryOnScheduler,
        messenger: Messenger,
        texts: Texts,
        config: RunnerConfig = RunnerConfig(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.preparer = preparer
        self.client = client
        self.scheduler = scheduler
        self.messenger = messenger
        self.texts = texts
        self.config = config
        self._clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._tickers: dict[str, StatusTicker] = {}
        self._submits: set[asyncio.Task[Job]] = set()
        self._canceled: set[str] = set()
        self._stopping = False
        self._admission = asyncio.Lock()

    # ---- public API -------------------------------------------------------------------

    def on_positions(self, positions: dict[str, int]) -> None:
        """Scheduler listener: moves '#N in line' on every waiting job's status."""
        for job_id, place in positions.items():
            ticker = self._tickers.get(job_id)
            if ticker is not None:
                ticker.set("waiting", place)

    async def launch(
        self, job: Job, admit: Callable[[], Awaitable[Refusal | None]] | None = None
    ) -> Refusal | None:
        """Stores a new job, posts its status message and starts it.

        `admit` (the quota check) runs under one lock with the reservation and the insert,
        so two try-ons finishing at the same moment cannot both take the last one of the
        day. Raises QueueFull when the user already has a running and a waiting try-on.
        The row is written before anything else: from then on a restart finds the try-on.
        """
        async with self._admission:
            refusal = await admit() if admit is not None else None
            if refusal is not None:
                return refusal
            self.scheduler.reserve(job.id, job.user_id)
            try:
                await self.store.create(job)
            except BaseException:
                self.scheduler.release(job.id)
                raise
        log.info(
            "job %s created: user=%s chat=%s inputs=%s",
            job.id, job.user_id, job.chat_id, ",".join(job.inputs()),
        )  # fmt: skip
        try:
            status = await self.messenger.send_text(
                job.chat_id,
                status_text(self.texts, job.lang, "preparing", 0),
                thread_id=job.thread_id,
                reply_to=job.request_message_id,
            )
        except TelegramError as error:  # the try-on goes ahead without a status line
            log.warning("job %s: no status message: %s", job.id, error)
        else:
            job = await self.store.update(job, status_message_id=status.message_id)
        self._start(job)
        return None

    async def resume(self) -> int:
        """Picks up every job a previous run left unfinished; returns how many."""
        jobs = await self.store.active()
        for job in jobs:
            if job.state is JobState.SUBMITTING:
                # The submit may or may not have reached DashScope: ask the user.
                log.warning("job %s: interrupted between submit and task id", job.id)
                await self._fail(job, Failure("interrupted"))
                continue
            if job.state is JobState.RUNNING:
                self.scheduler.adopt_running(job.id, job.user_id)
            elif job.state is JobState.QUEUED:
                self.scheduler.reserve(job.id, job.user_id)
            log.info("job %s resumed in state %s", job.id, job.state.value)
            self._start(job)
        return len(jobs)

    async def cancel(self, chat_id: int, user_id: int) -> list[tuple[Job, CancelOutcome]]:
        outcomes = []
        for job in await self.store.active_for(chat_id, user_id):
            outcomes.append((job, await self._cancel(job)))
        return outcomes

    async def stop(self) -> None:
        """Shutdown: in-flight jobs stay in the database and resume on the next start."""
        self._stopping = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        # A submit already on the wire is allowed to finish so its task id is stored.
        pending = [*tasks, *self._submits]
        if pending:
            await asyncio.wait(pending, timeout=self.config.shutdown_grace)

    @property
    def active_jobs(self) -> int:
        return len(self._tasks)

    # ---- the pipeline -----------------------------------------------------------------

    def _start(self, job: Job) -> None:
        ticker = StatusTicker(self, job)
        self._tickers[job.id] = ticker
        task = asyncio.create_task(self._run(job, ticker), name=f"tryon-{job.id}")
        self._tasks[job.id] = task

    async def _run(self, job: Job, ticker: StatusTicker) -> None:
        ticker_task = asyncio.create_task(ticker.run())
        try:
            job = await self._execute(job, ticker)
        except asyncio.CancelledError:
            if job.id in self._canceled:
                job = await self._mark_canceled(job)
            elif not self._stopping:
                raise
        except Exception as error:
            if not isinstance(error, (Failure, DashScopeError, ImageRejected)):
                log.exception("job %s: unexpected error", job.id)
            current = await self.store.get(job.id) or job
            try:
                job = await self._fail(current, error)
            except Exception:  # recorded as FAILING: the next start tells the user
                log.exception("job %s: could not report its failure", job.id)
        finally:
            ticker_task.cancel()
            self.scheduler.release(job.id)
            self._tasks.pop(job.id, None)
            self._tickers.pop(job.id, None)
            self._canceled.discard(job.id)

    async def _execute(self, job: Job, ticker: StatusTicker) -> Job:
        if job.state is JobState.QUEUED:
            ticker.set("preparing")
            job = await self._prepare(job)
        if job.state in (JobState.QUEUED, JobState.RUNNING):
            ticker.set("waiting", self.scheduler.position(job.id))
            async with self.scheduler.slot(job.id):
                if job.state is JobState.QUEUED:
                    ticker.set("submitting")
                    job = await self._submit(job)
                ticker.set(_stage_of(job.task_status))
                job = await self._await_task(job, ticker)
        if job.state is JobState.SUCCEEDED:
            ticker.set("sending")
            job = await self._deliver(job)
        elif job.state is JobState.FAILING:
            job = await self._fail(job, Failure(job.error_kind or "unknown", job.error_code))
        return job

    async def _prepare(self, job: Job) -> Job:
        """Makes sure every input has an upload that outlives the task (48 h lifetime)."""
        slots = {
            slot: image for slot, image in job.inputs().items() if not self.preparer.usable(image)
        }
        if not slots:
            return job
        started = time.monotonic()
        prepared = await asyncio.gather(*(self.preparer.prepare(img) for img in slots.values()))
        for slot, image in zip(slots, prepared, strict=True):
            assert image.url is not None and image.url_expires_at is not None
            job = await self.store.set_uploaded(job, slot, image.url, image.url_expires_at)
            job = _with_image(job, slot, image)
        log.info(
            "job %s: %d upload(s) ready in %.2f s", job.id, len(slots), time.monotonic() - started
        )
        return job

    async def _submit(self, job: Job) -> Job:
        if job.id in self._canceled:
            raise asyncio.CancelledError
        if any(not self.preparer.usable(img) for img in job.inputs().values()):
            job = await self._prepare(job)  # waited so long in line that an upload aged
        # Shielded: once the request is on its way, its answer is recorded even during shutdown.
        submit = asyncio.create_task(self._submit_and_record(job), name=f"submit-{job.id}")
        self._submits.add(submit)
        submit.add_done_callback(self._submits.discard)
        return await asyncio.shield(submit)

    async def _submit_and_record(self, job: Job) -> Job:
        job = await self.store.update(
            job, state=JobState.SUBMITTING, submit_intent_at=self._clock()
        )
        started = time.monotonic()
        try:
            task = await self.client.submit(
                _url(job.person),
                _url(job.top) if job.top else None,
                _url(job.bottom) if job.bottom else None,
            )
        except SubmitOutcomeUnknown:
            raise
        except DashScopeError as error:
            # DashScope answered with an error: no task exists, nothing is billed.
            await self.store.update(job, state=JobState.QUEUED)
            raise Failure(failure_kind(error), error.code) from error
        job = await self.store.update(
            job,
            state=JobState.RUNNING,
            task_id=task.task_id,
            task_status=task.status,
            submitted_at=self._clock(),
        )
        log.info(
            "job %s: submitted as task %s in %.2f s (user %s)",
            job.id,
            task.task_id,
            time.monotonic() - started,
            job.user_id,
        )
        return job

    async def _await_task(self, job: Job, ticker: StatusTicker) -> Job:
        task_id = job.task_id
        assert task_id is not None
        deadline = (job.submitted_at or self._clock()) + self.config.task_deadline
        while True:
            state = await self._query(task_id)
            if state is not None and state.status != job.task_status:
                job = await self.store.update(job, task_status=state.status)
                ticker.set(_stage_of(state.status))
                log.info("job %s: task %s is %s", job.id, job.task_id, state.status)
            if state is not None and state.is_terminal:
                return await self._finish_task(job, state)
            if self._clock() > deadline:
                with contextlib.suppress(DashScopeError):
                    await self.client.cancel(task_id)
                raise Failure("timeout")
            await asyncio.sleep(self.config.poll_interval)

    async def _query(self, task_id: str) -> TaskState | None:
        try:
            return await self.client.query(task_id)
        except DashScopeError as error:
            if error.retryable:
                log.warning("task %s: query failed (%s); polling on", task_id, error.code)
                return None
            raise

    async def _finish_task(self, job: Job, state: TaskState) -> Job:
        now = self._clock()
        if state.status == "SUCCEEDED" and state.image_url:
            log.info(
                "job %s: task %s succeeded after %.1f s",
                job.id,
                job.task_id,
                now - (job.submitted_at or now),
            )
            return await self.store.update(
                job, state=JobState.SUCCEEDED, result_url=state.image_url, finished_at=now
            )
        if state.status == "CANCELED":
            raise Failure("canceled")
        if state.status == "UNKNOWN":
            raise Failure("task_expired")
        error = DashScopeError(
            code=state.code or "Unknown",
            message=state.message or "",
            request_id=state.request_id,
            http_status=None,
        )
        log.info("job %s: task %s failed: %s", job.id, job.task_id, state.code)
        raise Failure(failure_kind(error), state.code)

    async def _deliver(self, job: Job) -> Job:
        assert job.result_url is not None
        started = time.monotonic()
        try:
            data = await self.client.download_result(job.result_url)
        except DashScopeError as error:
            raise Failure(
                "task_expired" if error.kind is ErrorKind.TASK_EXPIRED else failure_kind(error)
            ) from error
        caption = self.texts.get(job.lang, "result_caption")
        as_document = not _fits_send_photo(data)
        try:
            job, message = await self._send_to_chat(
                job,
                lambda j: self.messenger.send_photo(
                    j.chat_id,
                    data,
                    caption,
                    thread_id=j.thread_id,
                    reply_to=j.request_message_id,
                    markup=result_markup(self.texts, j.lang, j.id, j.user_id),
                    as_document=as_document,
                ),
            )
        except (BadRequest, Forbidden) as error:
            log.error("job %s: result undeliverable: %s", job.id, error)
            raise Failure("undeliverable") from error
        job = await self.store.update(
            job,
            state=JobState.DELIVERED,
            delivered_at=self._clock(),
            result_message_id=message.message_id,
        )
        log.info(
            "job %s: result delivered in %.2f s (%.1f s after the last input)",
            job.id,
            time.monotonic() - started,
            self._clock() - job.created_at,
        )
        if job.status_message_id is not None:
            await self.messenger.delete(job.chat_id, job.status_message_id)
        return job

    async def _send_to_chat(
        self, job: Job, send: Callable[[Job], Awaitable[Message]]
    ) -> tuple[Job, Message]:
        """Sends to the job's chat, following it if the group became a supergroup."""
        try:
            return job, await send(job)
        except ChatMigrated as migrated:
            new_chat = migrated.new_chat_id
            log.info("job %s: chat %s is now %s", job.id, job.chat_id, new_chat)
            await self.store.migrate_chat(job.chat_id, new_chat)
            # Message ids of the old group mean nothing in the new one.
            job = await self.store.update(
                job, chat_id=new_chat, request_message_id=None, status_message_id=None
            )
            return job, await send(job)

    async def _fail(self, job: Job, error: BaseException) -> Job:
        kind = failure_kind(error)
        code = error.code if isinstance(error, (Failure, DashScopeError)) else None
        if kind == "service_unavailable":
            log.error(
                "job %s: DashScope refuses the account (%s): check the API key/billing",
                job.id,
                code,
            )
        # Record the outcome before telling the user, so a crash here re-sends the notice.
        job = await self.store.update(
            job,
            state=JobState.FAILING,
            error_kind=kind,
            error_code=code,
            finished_at=job.finished_at or self._clock(),
        )
        interrupted = kind in ("interrupted", "submit_unknown")
        final = JobState.INTERRUPTED if interrupted else JobState.FAILED
        if kind == "canceled":
            final = JobState.CANCELED
        try:
            job, _ = await self._send_to_chat(
                job,
                lambda j: self.messenger.send_text(
                    j.chat_id,
                    failure_text(self.texts, j.lang, kind),
                    thread_id=j.thread_id,
                    reply_to=j.request_message_id,
                    markup=failure_markup(self.texts, j.lang, kind, j.id, j.user_id),
                ),
            )
        except (BadRequest, Forbidden) as send_error:
            log.error("job %s: failure notice undeliverable: %s", job.id, send_error)
        job = await self.store.update(job, state=final)
        log.info("job %s: ended as %s (%s)", job.id, final.value, kind)
        if job.status_message_id is not None:
            await self.messenger.delete(job.chat_id, job.status_message_id)
        return job

    async def _cancel(self, job: Job) -> CancelOutcome:
        if job.state is JobState.SUBMITTING:
            return CancelOutcome.SUBMITTING
        if job.state is JobState.QUEUED:
            self._canceled.add(job.id)
            task = self._tasks.get(job.id)
            if task is not None and not any(not s.done() for s in self._submits_of(job)):
                task.cancel()
                return CancelOutcome.CANCELED
            return CancelOutcome.SUBMITTING
        if job.state is JobState.RUNNING and job.task_id is not None:
            try:
                canceled = await self.client.cancel(job.task_id)
            except DashScopeError:
                canceled = False
            # The poller sees CANCELED at its next query and tells the user.
            return CancelOutcome.CANCELED if canceled else CancelOutcome.TOO_LATE
        return CancelOutcome.TOO_LATE

    def _submits_of(self, job: Job) -> list[asyncio.Task[Job]]:
        return [t for t in self._submits if t.get_name() == f"submit-{job.id}"]

    async def _mark_canceled(self, job: Job) -> Job:
        current = await self.store.get(job.id) or job
        if current.state is not JobState.QUEUED:
            return current
        job = await self._fail(current, Failure("canceled"))
        return job


def _stage_of(task_status: str | None) -> str:
    """A busy account keeps tasks PENDING at DashScope: the user is told they are queued."""
    return "queued_remote" if task_status == "PENDING" else "generating"


def _url(image: InputImage) -> str:
    assert image.url is not None
    return image.url


def _with_image(job: Job, slot: str, image: InputImage) -> Job:
    changes: dict[str, InputImage] = {slot: image}
    return replace(job, **changes)  # type: ignore[arg-type]


def _fits_send_photo(data: bytes) -> bool:
    if len(data) > MAX_PHOTO_BYTES:
        return False
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except OSError:
        return False
    return width + height <= MAX_PHOTO_SIDES and max(width, height) <= 20 * min(width, height)
