"""The try-on pipeline: one job from its inputs to the picture in the user's hands.

    ensure uploaded → parse kept garments → wait for a slot → submit → await the task → deliver

`TryOnRunner._execute` is that line, in that order. Each step records its outcome in
the jobs table before the next one starts and skips itself when the job is already past
it, so a restart resumes every job where it stopped, and a submit is never repeated
silently. The outside world (Telegram, or a test) is reached only through the
`Notifier` and `FileSource` ports (services/tryon/ports.py).

A job is a try-on or, for HD, a refine (aitryon-refiner on a try-on's result): the same
steps, with uploads for the refiner's model and another submit body. A try-on may keep
the person's own top or bottom ("keep mine"): the parsing step finds it (its crop URL is
stored on the job, so a restart does not parse again) and the submit sends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

from services.dashscope import (
    DashScopeClient,
    DashScopeError,
    ErrorKind,
    SubmitOutcomeUnknown,
    TaskState,
)
from services.dashscope.client import REFINER_MODEL
from services.images.intake import ImageIntake
from services.images.normalize import ImageRejected
from services.model import RESULT_LIFETIME, FailureKind, InputImage, Job, JobKind, JobState
from services.storage.jobs import FlowEnd, JobStore
from services.tryon.failures import Failure, failure_of
from services.tryon.features import Features
from services.tryon.garments import CROP_MARGIN, KeptGarments
from services.tryon.ports import (
    DeliveryAmbiguous,
    DeliveryDeferred,
    FileUnavailable,
    Notifier,
    Receipt,
    Stage,
    Undeliverable,
    Unreachable,
)
from services.tryon.quota import Refusal
from services.tryon.scheduler import QueueFull, TryOnScheduler

log = logging.getLogger(__name__)


class CancelOutcome(enum.Enum):
    CANCELED = "canceled"
    TOO_LATE = "too_late"  # DashScope is already generating it; the result will come
    SUBMITTING = "submitting"


@dataclass(frozen=True)
class RunnerConfig:
    poll_interval: float = 0.5
    task_deadline: float = 600.0
    # SIGTERM: a submit or a send on the wire gets this long to record its outcome, so the
    # whole process exits within 8 s (Docker's default grace is 10 s).
    shutdown_grace: float = 4.0
    # Throttling/overload at submit: wait with growing back-off for up to this long.
    busy_patience: float = 180.0
    busy_base_delay: float = 1.0
    busy_max_delay: float = 30.0
    # A submit with an unknown outcome: list the account's tasks this many times, waiting
    # reconcile_delay × attempt in between (a new task may take a moment to be listed).
    reconcile_attempts: int = 4
    reconcile_delay: float = 1.0
    reconcile_margin: float = 5.0  # clock skew between us and DashScope, each side
    submit_window: float = 60.0  # the latest a task may be created after the intent
    # A result Telegram cannot take now: retried with back-off (first delay, cap).
    delivery_base_delay: float = 5.0
    delivery_max_delay: float = 300.0


# Errors that end a job in an expected way (logged without a traceback).
EXPECTED_ERRORS = (Failure, DashScopeError, ImageRejected, FileUnavailable, Undeliverable)


class TryOnRunner:
    def __init__(
        self,
        *,
        store: JobStore,
        intake: ImageIntake,
        client: DashScopeClient,
        scheduler: TryOnScheduler,
        notifier: Notifier,
        config: RunnerConfig = RunnerConfig(),
        clock: Callable[[], float] = time.time,
        garments: KeptGarments | None = None,
        features: Features | None = None,
    ) -> None:
        self.garments = garments
        self.features = features or Features()
        self.store = store
        self.intake = intake
        self.client = client
        self.scheduler = scheduler
        self.notifier = notifier
        self.config = config
        self._clock = clock
        self._jobs: dict[str, Job] = {}  # the latest copy of every job this process runs
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._submits: dict[str, asyncio.Task[Job]] = {}
        self._sends: dict[str, asyncio.Task[Job]] = {}
        self._reuploaded: set[str] = set()  # jobs whose inputs were uploaded again (once)
        self._stop_event = asyncio.Event()
        self._canceled: set[str] = set()
        self._stopping = False
        self._admission = asyncio.Lock()
        scheduler.listen(self._on_positions)

    # ---- public API -------------------------------------------------------------------

    async def launch(
        self,
        job: Job,
        admit: Callable[[], Awaitable[Refusal | None]] | None = None,
        flow: FlowEnd | None = None,
    ) -> Refusal | None:
        """Stores a new job and starts it; the status message is posted by the job itself.

        `admit` (the quota check) runs under one lock with the reservation and the insert,
        so two try-ons finishing at the same moment cannot both take the last one of the
        day. Raises QueueFull when the user already has a running and a waiting try-on.
        The row is written before anything else: from then on a restart finds the try-on.
        With `flow`, the conversation that asked for it ends in the same transaction.
        """
        if job.kind is JobKind.TRYON:  # what the submit will send decides if HD is possible
            job = replace(job, refinable=self.client.refinable)
        async with self._admission:
            refusal = await admit() if admit is not None else None
            if refusal is not None:
                return refusal
            self.scheduler.reserve(job.id, job.user_id, job.batch_id)
            try:
                await self.store.create(job, flow)
            except BaseException:
                self.scheduler.release(job.id)
                raise
        log.info(
            "job %s created: user=%s chat=%s inputs=%s",
            job.id, job.user_id, job.chat_id, ",".join(job.inputs()),
        )  # fmt: skip
        self._start(job, announce=True)
        return None

    async def launch_batch(
        self,
        jobs: list[Job],
        admit: Callable[[int], Awaitable[Refusal | None]],
        flow: FlowEnd | None = None,
    ) -> Refusal | None:
        """Stores and starts the jobs of one batch, all or none: `admit(n)` checks the quota
        for all of them under the admission lock, and the batch is one request for the
        user's allowance (QueueFull when they hold all their places already)."""
        async with self._admission:
            refusal = await admit(len(jobs))
            if refusal is not None:
                return refusal
            if not self.scheduler.has_room(jobs[0].user_id):
                raise QueueFull(0, 0)
            try:
                for job in jobs:
                    self.scheduler.reserve(job.id, job.user_id, job.batch_id)
                await self.store.create_all(jobs, flow)
            except BaseException:
                for job in jobs:
                    self.scheduler.release(job.id)
                raise
        log.info(
            "batch %s created: %d jobs for user %s", jobs[0].batch_id, len(jobs), jobs[0].user_id
        )
        for job in jobs:
            self._start(job, announce=True)
        return None

    async def resume(self) -> int:
        """Picks up every job a previous run left unfinished; returns how many."""
        jobs = await self.store.active()
        for job in jobs:
            if job.state is JobState.SUBMITTING:
                # The submit may or may not have reached DashScope: reconciled in _submit.
                log.warning("job %s: interrupted between submit and task id", job.id)
            if job.state is JobState.RUNNING:
                self.scheduler.adopt_running(job.id, job.user_id, job.batch_id)
            elif job.state in (JobState.QUEUED, JobState.SUBMITTING):
                self.scheduler.reserve(job.id, job.user_id, job.batch_id)
            log.info("job %s resumed in state %s", job.id, job.state.value)
            self._start(job)
        return len(jobs)

    async def redeliver(self, job: Job) -> bool:
        """Sends a paid result again (the user came back, or pressed "Try again" after a
        delivery problem); never submits. False when there is nothing (left) to send."""
        running = self._tasks.get(job.id)
        if running is not None:  # still telling the user how it ended: let it finish
            await asyncio.wait({running}, timeout=10.0)
            job = await self.store.get(job.id) or job
            if job.id in self._tasks or job.state in (JobState.SUCCEEDED, JobState.DELIVERED):
                return True
        if job.result_url is None:
            return False
        if self._clock() - (job.finished_at or job.created_at) > RESULT_LIFETIME:
            return False
        job = await self.store.update(job, state=JobState.SUCCEEDED, error_kind=None)
        log.info("job %s: sending its result again", job.id)
        self._start(job)
        return True

    async def cancel(self, chat_id: int, user_id: int) -> list[tuple[Job, CancelOutcome]]:
        outcomes = []
        for job in await self.store.active_for(chat_id, user_id):
            outcomes.append((job, await self._cancel(job)))
        return outcomes

    def now(self) -> float:
        """The runner's clock (expiry checks of results and crops use it)."""
        return self._clock()

    async def settled(self, job: Job, timeout: float = 5.0) -> Job:
        """The job once this process has finished with it (a button pressed under a
        failure notice can arrive before the notice's job records its final state)."""
        task = self._tasks.get(job.id)
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=timeout)
        return await self.store.get(job.id) or job

    async def full_size(self, job: Job) -> bytes:
        """The job's result as DashScope made it (raises DashScopeError once it expired)."""
        if job.result_url is None:
            raise Failure(FailureKind.TASK_EXPIRED)
        return await self.client.download_result(job.result_url)

    async def stop(self) -> None:
        """Shutdown: in-flight jobs stay in the database and resume on the next start."""
        self._stopping = True
        self._stop_event.set()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        # A submit or a send already on the wire may finish, so its outcome is stored.
        pending = [*tasks, *self._submits.values(), *self._sends.values()]
        if pending:
            await asyncio.wait(pending, timeout=self.config.shutdown_grace)

    # ---- the pipeline -----------------------------------------------------------------

    async def _execute(self, job: Job) -> Job:
        """One job, step by step; each step returns at once if the job is past it."""
        job = await self._ensure_uploaded(job)
        job = await self._parse_kept(job)
        async with self._slot(job):
            job = await self._submit(job)
            job = await self._await_task(job)
            if job.state is JobState.QUEUED:  # the task could not fetch an input: once more
                job = await self._submit(job)
                job = await self._await_task(job)
        job = await self._deliver(job)
        return job

    async def _ensure_uploaded(self, job: Job) -> Job:
        """Every input has an upload that outlives the task (temporary files last 48 h)."""
        if job.state is not JobState.QUEUED:
            return job
        self._stage(job, Stage.PREPARING)
        slots = {
            slot: image for slot, image in job.inputs().items() if not self.intake.usable(image)
        }
        if not slots:
            return job
        started = time.monotonic()
        ready = await asyncio.gather(
            *(self.intake.ensure_uploaded(i, job.model) for i in slots.values())
        )
        for slot, image in zip(slots, ready, strict=True):
            assert image.url is not None and image.url_expires_at is not None
            job = await self.store.set_uploaded(job, slot, image.url, image.url_expires_at)
            job = self._jobs[job.id] = _with_image(job, slot, image)
        log.info(
            "job %s: %d upload(s) ready in %.2f s", job.id, len(slots), time.monotonic() - started
        )
        return job

    async def _parse_kept(self, job: Job) -> Job:
        """Keep mine: the person's own garment for the kept slot (aitryon-parsing-v1),
        usually found already in the background while the user chose the next step."""
        if job.state is not JobState.QUEUED or job.kind is not JobKind.TRYON or not job.keep:
            return job
        if job.kept_missing or job.kept_crop(self._clock() + CROP_MARGIN) is not None:
            return job
        assert self.garments is not None, "keep mine needs the KeptGarments service"
        self._stage(job, Stage.PREPARING)
        url, made_at = await self.garments.crop(job.person, job.keep)
        if url is None:
            log.info("job %s: no %s to keep; the model picks one", job.id, job.keep)
        return await self._save(job, kept_url=url, kept_at=made_at)

    @contextlib.asynccontextmanager
    async def _slot(self, job: Job) -> AsyncIterator[None]:
        """One of the account's task slots, for as long as the task runs at DashScope."""
        if job.state not in (JobState.QUEUED, JobState.SUBMITTING, JobState.RUNNING):
            yield
            return
        self._stage(job, Stage.WAITING, self.scheduler.position(job.id))
        async with self.scheduler.slot(job.id):
            yield

    async def _submit(self, job: Job) -> Job:
        if job.state is JobState.SUBMITTING:  # found so after a restart: the submit was sent
            return await self._reconcile(job, FailureKind.INTERRUPTED)
        if job.state is not JobState.QUEUED:
            return job
        if job.id in self._canceled:
            raise asyncio.CancelledError
        self._stage(job, Stage.SUBMITTING)
        if any(not self.intake.usable(img) for img in job.inputs().values()):
            job = await self._ensure_uploaded(job)  # waited so long in line that an upload aged
        # Shielded: once the request is on its way, its answer is recorded even during shutdown.
        submit = asyncio.create_task(self._submit_and_record(job), name=f"submit-{job.id}")
        self._submits[job.id] = submit
        submit.add_done_callback(lambda _: self._submits.pop(job.id, None))
        return await asyncio.shield(submit)

    async def _submit_and_record(self, job: Job) -> Job:
        busy_since: float | None = None
        busy_round = 0
        while True:
            job = await self._save(job, state=JobState.SUBMITTING, submit_intent_at=self._clock())
            started = time.monotonic()
            try:
                task = await self._send(job)
                break
            except SubmitOutcomeUnknown as error:
                log.warning(
                    "job %s: submit outcome unknown (%s); reconciling with the task list",
                    job.id, error,
                )  # fmt: skip
                return await self._reconcile(job, FailureKind.SUBMIT_UNKNOWN)
            except DashScopeError as error:
                # DashScope refused it: no task exists, nothing is billed.
                job = await self._save(job, state=JobState.QUEUED)
                if _busy(error):
                    now = time.monotonic()
                    busy_since = busy_since if busy_since is not None else now
                    if now - busy_since < self.config.busy_patience and not self._stopping:
                        busy_round += 1
                        delay = self._busy_delay(busy_round, error.retry_after)
                        log.warning(
                            "job %s: DashScope is busy (%s); waiting %.1f s (round %d)",
                            job.id, error.code, delay, busy_round,
                        )  # fmt: skip
                        self._stage(job, Stage.BUSY)
                        await self._pause(delay)
                        self._stage(job, Stage.SUBMITTING)
                        continue
                elif _undownloadable(error) and job.id not in self._reuploaded:
                    log.warning("job %s: DashScope could not fetch an input; uploading again")
                    job = await self._reupload(job)
                    continue
                raise failure_of(error) from error
        job = await self._save(
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

    async def _send(self, job: Job) -> TaskState:
        """The submit request: a try-on, or the refiner's (HD) with the try-on's result."""
        top, bottom = _garment_url(job, "top"), _garment_url(job, "bottom")
        if job.kind is JobKind.REFINE:
            assert top is not None and job.coarse_url is not None and job.gender is not None
            return await self.client.submit_refine(
                _url(job.person), top, bottom, job.coarse_url, job.gender
            )
        return await self.client.submit(_url(job.person), top, bottom)

    async def _reconcile(self, job: Job, unresolved: FailureKind) -> Job:
        """A submit whose outcome is unknown: adopt its task if the account's task list
        proves which one it is (the only task of this model in the submit's time window
        that no job owns, with no other unresolved submit near it); otherwise end with
        `unresolved`, whose notice offers a one-tap Try again. Never submits."""
        self._stage(job, Stage.SUBMITTING)
        intent = job.submit_intent_at or job.created_at
        margin = self.config.reconcile_margin
        start, latest = intent - margin, intent + self.config.submit_window
        seen = "no answer from the task list"
        for attempt in range(max(1, self.config.reconcile_attempts)):
            if attempt:
                await self._pause(self.config.reconcile_delay * attempt)
            try:
                listed = await self.client.list_tasks(
                    start, min(self._clock(), latest) + margin, model=job.model
                )
            except DashScopeError as error:
                log.warning("job %s: task list failed (%s)", job.id, error)
                continue
            owned = await self.store.owned_task_ids([t.task_id for t in listed])
            free = [t for t in listed if t.task_id not in owned]
            rivals = await self.store.unresolved_submits(
                job.id, start - self.config.submit_window, latest + margin
            )
            if len(free) == 1 and not rivals:
                task = free[0]
                job = await self._save(
                    job,
                    state=JobState.RUNNING,
                    task_id=task.task_id,
                    task_status=None,
                    submitted_at=intent,
                )
                log.info(
                    "job %s: reconciled: adopted task %s, the only unowned %s task created "
                    "in the submit's window (attempt %d)",
                    job.id, task.task_id, job.model, attempt + 1,
                )  # fmt: skip
                return job
            seen = f"{len(free)} unowned task(s), {len(rivals)} other unresolved submit(s)"
            log.info("job %s: reconcile attempt %d: %s", job.id, attempt + 1, seen)
        log.warning(
            "job %s: submit outcome could not be proven (%s): asking the user", job.id, seen
        )
        raise Failure(unresolved)

    async def _reupload(self, job: Job) -> Job:
        """DashScope could not download an input (an oss:// file expired or vanished):
        every input is uploaded afresh, once per job (the failed try-on cost nothing)."""
        self._reuploaded.add(job.id)
        for slot, image in job.inputs().items():
            fresh = await self.intake.refresh(image, job.model)
            assert fresh.url is not None and fresh.url_expires_at is not None
            job = await self.store.set_uploaded(job, slot, fresh.url, fresh.url_expires_at)
            job = _with_image(job, slot, fresh)
            if job.id in self._jobs:
                self._jobs[job.id] = job
        return job

    def _busy_delay(self, round_: int, retry_after: float | None) -> float:
        growth: float = self.config.busy_base_delay * 2.0 ** (round_ - 1)
        ceiling = min(self.config.busy_max_delay, growth)
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        return max(delay, min(retry_after or 0.0, self.config.busy_max_delay))

    async def _pause(self, seconds: float) -> None:
        """Sleeps, but a shutdown ends the wait (the job stays resumable)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), seconds)
        if self._stopping:
            raise asyncio.CancelledError

    async def _await_task(self, job: Job) -> Job:
        if job.state is not JobState.RUNNING:
            return job
        task_id = job.task_id
        assert task_id is not None
        self._stage(job, _stage_of(job.task_status))
        deadline = (job.submitted_at or self._clock()) + self.config.task_deadline
        while True:
            state = await self._query(task_id)
            if state is not None and state.status != job.task_status:
                job = await self._save(job, task_status=state.status)
                self._stage(job, _stage_of(state.status))
                log.info("job %s: task %s is %s", job.id, job.task_id, state.status)
            if state is not None and state.is_terminal:
                return await self._finish_task(job, state)
            if self._clock() > deadline:
                with contextlib.suppress(DashScopeError):
                    await self.client.cancel(task_id)
                raise Failure(FailureKind.TIMEOUT)
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
            return await self._save(
                job, state=JobState.SUCCEEDED, result_url=state.image_url, finished_at=now
            )
        error = state.error() or DashScopeError("Unknown", f"no result in {state.status} task")
        log.info("job %s: task %s ended %s: %s", job.id, job.task_id, state.status, state.code)
        if _undownloadable(error) and job.id not in self._reuploaded:
            # The failed task produced no image and cost nothing: upload again, run once more.
            log.warning("job %s: the task could not fetch an input; uploading again", job.id)
            job = await self._save(job, state=JobState.QUEUED, task_id=None, task_status=None)
            return await self._reupload(job)
        raise failure_of(error) from None

    async def _deliver(self, job: Job) -> Job:
        if job.state is JobState.FAILING:  # decided before a restart; the user was not told
            raise Failure(FailureKind.parse(job.error_kind), job.error_code)
        if job.state is not JobState.SUCCEEDED:
            return job
        assert job.result_url is not None
        self._stage(job, Stage.SENDING)
        attempt = 0
        while True:
            try:
                # Shielded: a send on the wire finishes (and is recorded) during shutdown.
                send = asyncio.create_task(self._send_result(job), name=f"send-{job.id}")
                self._sends[job.id] = send
                send.add_done_callback(lambda _: self._sends.pop(job.id, None))
                return await asyncio.shield(send)
            except Unreachable as error:
                # Blocked: no more calls; offered again when the user comes back.
                log.warning(
                    "job %s: user unreachable (%s); result kept for their return", job.id, error
                )
                return await self._save(job, state=JobState.UNDELIVERED)
            except DeliveryAmbiguous as error:
                log.warning(
                    "job %s: result send ambiguous twice (%s): it may have arrived; "
                    "not sent again", job.id, error,
                )  # fmt: skip
                return await self._save(job, state=JobState.DELIVERED, delivered_at=self._clock())
            except (DeliveryDeferred, DashScopeError) as error:
                if isinstance(error, DashScopeError) and not error.retryable:
                    raise
                attempt += 1
                expires = (job.finished_at or job.created_at) + RESULT_LIFETIME
                delay = min(
                    self.config.delivery_max_delay,
                    self.config.delivery_base_delay * 2 ** (attempt - 1),
                )
                if self._clock() + delay > expires:
                    raise Failure(FailureKind.TASK_EXPIRED) from error
                log.warning(
                    "job %s: result not delivered yet (%s); retrying in %.0f s (attempt %d)",
                    job.id, error, delay, attempt,
                )  # fmt: skip
                await self._pause(delay)

    async def _send_result(self, job: Job) -> Job:
        assert job.result_url is not None
        started = time.monotonic()
        data = await self.client.download_result(job.result_url)
        receipt = await self.notifier.deliver(job, data)
        # Delivered and Telegram's message id in one write.
        job = await self._moved(
            job,
            receipt,
            state=JobState.DELIVERED,
            delivered_at=self._clock(),
            result_message_id=receipt.message_id,
        )
        log.info(
            "job %s: result delivered in %.2f s (%.1f s after the last input)",
            job.id,
            time.monotonic() - started,
            self._clock() - job.created_at,
        )
        return job

    # ---- around the steps -------------------------------------------------------------

    def _start(self, job: Job, *, announce: bool = False) -> None:
        self._jobs[job.id] = job
        self._tasks[job.id] = asyncio.create_task(self._run(job, announce), name=f"tryon-{job.id}")

    async def _announce(self, job: Job) -> Job:
        """The status line of a new job; a courtesy, so any failure just skips it."""
        try:
            receipt = await self.notifier.started(job)
        except Exception as error:  # the try-on goes ahead without a status line
            log.warning("job %s: no status message: %r", job.id, error)
            return job
        return await self._moved(job, receipt, status_message_id=receipt.message_id)

    async def _run(self, job: Job, announce: bool = False) -> None:
        try:
            if announce:
                job = await self._announce(job)
            job = await self._execute(job)
        except asyncio.CancelledError:
            if job.id in self._canceled:
                job = await self._mark_canceled(job)
            elif not self._stopping:
                raise
        except Exception as error:
            if not isinstance(error, EXPECTED_ERRORS):
                log.exception("job %s: unexpected error", job.id)
            current = await self.store.get(job.id) or job
            try:
                job = await self._fail(current, error)
            except Exception:  # recorded as FAILING: the next start tells the user
                log.exception("job %s: could not report its failure", job.id)
        finally:
            try:
                await self.notifier.finished(self._jobs.get(job.id, job))
            except Exception:
                log.exception("job %s: could not clear its progress", job.id)
            self.scheduler.release(job.id)
            self._tasks.pop(job.id, None)
            self._jobs.pop(job.id, None)
            self._canceled.discard(job.id)

    def _stage(self, job: Job, stage: Stage, position: int | None = None) -> None:
        self.notifier.stage(self._jobs.get(job.id, job), stage, position)

    def _on_positions(self, positions: dict[str, int]) -> None:
        """Scheduler listener: moves '#N in line' on every waiting job's status."""
        for job_id, place in positions.items():
            job = self._jobs.get(job_id)
            if job is not None:
                self.notifier.stage(job, Stage.WAITING, place)

    async def _save(self, job: Job, **changes: object) -> Job:
        """Writes the job's new columns, and keeps the copy the notifier is shown current."""
        job = await self.store.update(job, **changes)
        if job.id in self._jobs:
            self._jobs[job.id] = job
        return job

    async def _moved(self, job: Job, receipt: Receipt, **changes: object) -> Job:
        """Records a message's outcome, following the chat if it became a supergroup."""
        if receipt.chat_id != job.chat_id:
            log.info("job %s: chat %s is now %s", job.id, job.chat_id, receipt.chat_id)
            await self.store.migrate_chat(job.chat_id, receipt.chat_id)
            # Message ids of the old group mean nothing in the new one.
            changes = {
                "request_message_id": None,
                "status_message_id": None,
                **changes,
                "chat_id": receipt.chat_id,
            }
        return await self._save(job, **changes)

    async def _fail(self, job: Job, error: BaseException) -> Job:
        failure = failure_of(error)
        account = failure.kind.operator_problem
        if account and job.model == REFINER_MODEL:
            # Only the refiner is refused: HD is hidden for the run (logged once there).
            account = not self.features.refiner_refused(failure.code)
        if account:
            log.error(
                "job %s: DashScope refuses the account (%s): check the API key/billing",
                job.id,
                failure.code,
            )
        # Record the outcome before telling the user, so a crash here re-sends the notice.
        job = await self._save(
            job,
            state=JobState.FAILING,
            error_kind=failure.kind.value,
            error_code=failure.code,
            finished_at=job.finished_at or self._clock(),
        )
        final = {
            FailureKind.INTERRUPTED: JobState.INTERRUPTED,
            FailureKind.SUBMIT_UNKNOWN: JobState.INTERRUPTED,
            FailureKind.CANCELED: JobState.CANCELED,
        }.get(failure.kind, JobState.FAILED)
        try:
            receipt = await self.notifier.failed(job, failure.kind)
        except Undeliverable as send_error:
            log.error("job %s: failure notice undeliverable: %s", job.id, send_error)
        else:
            job = await self._moved(job, receipt)
        job = await self._save(job, state=final)
        log.info("job %s: ended as %s (%s)", job.id, final.value, failure.kind.value)
        return job

    async def _cancel(self, job: Job) -> CancelOutcome:
        if job.state is JobState.SUBMITTING:
            return CancelOutcome.SUBMITTING
        if job.state is JobState.QUEUED:
            self._canceled.add(job.id)
            task = self._tasks.get(job.id)
            submit = self._submits.get(job.id)
            if task is not None and (submit is None or submit.done()):
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

    async def _mark_canceled(self, job: Job) -> Job:
        current = await self.store.get(job.id) or job
        if current.state is not JobState.QUEUED:
            return current
        return await self._fail(current, Failure(FailureKind.CANCELED))


def _busy(error: DashScopeError) -> bool:
    """Throttling or overload: a refusal before any task exists, worth waiting out."""
    return error.kind is ErrorKind.THROTTLED or error.code == "ModelUnavailable"


def _undownloadable(error: DashScopeError) -> bool:
    """DashScope could not fetch an input: "Unable to download the media resource…", or
    `InvalidURL` for an oss:// URL the bot made itself (the object expired or vanished)."""
    return error.kind is ErrorKind.INVALID_URL


def _stage_of(task_status: str | None) -> Stage:
    """A busy account keeps tasks PENDING at DashScope: the user is told they are queued."""
    return Stage.QUEUED_REMOTE if task_status == "PENDING" else Stage.GENERATING


def _garment_url(job: Job, slot: str) -> str | None:
    """The garment the submit sends for a slot: the user's, the person's own, or none."""
    image = job.image(slot)
    if image is not None:
        return _url(image)
    return job.kept_url if job.keep == slot else None


def _url(image: InputImage) -> str:
    assert image.url is not None
    return image.url


def _with_image(job: Job, slot: str, image: InputImage) -> Job:
    changes: dict[str, InputImage] = {slot: image}
    return replace(job, **changes)  # type: ignore[arg-type]
