"""The try-on pipeline on its own: an in-memory Notifier and FileSource stand in for
Telegram, the DashScope double for DashScope. Each stage, each way a job can end,
cancel at each stage, and resume from each state a job can be stored in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.dashscope import DashScopeClient
from services.images.intake import ImageIntake
from services.images.normalize import ImageLimits, ImageRejected, RejectReason
from services.model import FailureKind, InputImage, Job, JobState, new_job_id
from services.retry import RetryPolicy
from services.storage.crops import CropStore
from services.storage.database import Database
from services.storage.jobs import JobStore
from services.storage.uploads import UploadCache
from services.tryon.garments import KeptGarments
from services.tryon.pipeline import CancelOutcome, RunnerConfig, TryOnRunner
from services.tryon.ports import (
    DeliveryDeferred,
    FileUnavailable,
    Receipt,
    Stage,
    Undeliverable,
    Unreachable,
)
from services.tryon.scheduler import SchedulerLimits, TryOnScheduler
from tests.doubles.dashscope import FakeDashScope
from tests.harness import API_KEY, jpeg


@dataclass
class MemoryFiles:
    """A FileSource: files by id; a missing id is 'unavailable', a marked one too big."""

    files: dict[str, bytes] = field(default_factory=dict)
    too_big: set[str] = field(default_factory=set)
    downloads: int = 0

    async def download(self, file_id: str) -> bytes:
        self.downloads += 1
        if file_id in self.too_big:
            raise ImageRejected(RejectReason.FILE_TOO_LARGE)
        if file_id not in self.files:
            raise FileUnavailable(file_id)
        return self.files[file_id]


@dataclass
class MemoryNotifier:
    """A Notifier that records what a user would have seen."""

    stages: list[tuple[str, Stage]] = field(default_factory=list)
    delivered: list[tuple[str, int]] = field(default_factory=list)  # job id, image bytes
    failures: list[tuple[str, FailureKind]] = field(default_factory=list)
    ended_jobs: list[tuple[str, JobState]] = field(default_factory=list)
    refuse_delivery: bool = False
    blocked: bool = False  # the user blocked the bot
    defer_next: int = 0  # Telegram cannot take the next N results now
    move_to_chat: int | None = None  # the chat became a supergroup
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    notice_gate: asyncio.Event | None = None  # failure notices wait for it (then return)

    async def started(self, job: Job) -> Receipt:
        return Receipt(job.chat_id, 100)

    def stage(self, job: Job, stage: Stage, position: int | None = None) -> None:
        if not self.stages or self.stages[-1] != (job.id, stage):
            self.stages.append((job.id, stage))
        self.changed.set()

    async def deliver(self, job: Job, image: bytes) -> Receipt:
        if self.refuse_delivery:
            raise Undeliverable("Bad Request: something permanent")
        if self.blocked:
            raise Unreachable("Forbidden: bot was blocked by the user")
        if self.defer_next:
            self.defer_next -= 1
            raise DeliveryDeferred("gave up waiting for Telegram")
        self.delivered.append((job.id, len(image)))
        return Receipt(self.move_to_chat or job.chat_id, 200)

    async def failed(self, job: Job, kind: FailureKind) -> Receipt:
        self.failures.append((job.id, kind))
        self.changed.set()
        if self.notice_gate is not None:
            await self.notice_gate.wait()
        return Receipt(job.chat_id, 300)

    async def finished(self, job: Job) -> None:
        self.ended_jobs.append((job.id, job.state))
        self.changed.set()

    def stages_of(self, job_id: str) -> list[Stage]:
        return [stage for jid, stage in self.stages if jid == job_id]


@dataclass
class Rig:
    runner: TryOnRunner
    store: JobStore
    notifier: MemoryNotifier
    files: MemoryFiles
    ds: FakeDashScope
    db: Database

    def job(self, **overrides: Any) -> Job:
        self.files.files.setdefault("person", jpeg(seed=1))
        self.files.files.setdefault("top", jpeg(seed=2))
        fields: dict[str, Any] = {
            "id": new_job_id(),
            "chat_id": 42,
            "user_id": 42,
            "lang": "en",
            "model": "aitryon-plus",
            "person": InputImage("person", "u-person"),
            "top": InputImage("top", "u-top"),
        }
        return Job(**{**fields, **overrides})

    async def ended(self, job_id: str, timeout: float = 10.0) -> Job:
        """Waits until the job has finished (either way) and returns its stored row."""

        async def done() -> None:
            while not any(jid == job_id for jid, _ in self.notifier.ended_jobs):
                self.notifier.changed.clear()
                await self.notifier.changed.wait()

        await asyncio.wait_for(done(), timeout)
        stored = await self.store.get(job_id)
        assert stored is not None
        return stored

    async def reached(self, job_id: str, stage: Stage, timeout: float = 10.0) -> None:
        async def seen() -> None:
            while stage not in self.notifier.stages_of(job_id):
                self.notifier.changed.clear()
                await self.notifier.changed.wait()

        await asyncio.wait_for(seen(), timeout)


FAST_RUNNER: dict[str, Any] = {
    "poll_interval": 0.02,
    "reconcile_delay": 0.05,
    "busy_base_delay": 0.05,
    "busy_max_delay": 0.2,
    "delivery_base_delay": 0.05,
}


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Builds runners on one database (a second call is a restart of the first)."""
    opened: list[tuple[TryOnRunner, Database, aiohttp.ClientSession]] = []
    ds = FakeDashScope(pending_seconds=0.02, running_seconds=0.05)
    await ds.start()

    async def build(max_concurrent: int = 5, **config: Any) -> Rig:
        db = Database(tmp_path / "tryon.sqlite3")
        http = aiohttp.ClientSession()
        client = DashScopeClient(
            http,
            api_key=API_KEY,
            base_url=ds.base_url,
            model="aitryon-plus",
            retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02),
            request_timeout=2.0,
        )
        files, notifier = MemoryFiles(), MemoryNotifier()
        store = JobStore(db)
        intake = ImageIntake(
            files, client, UploadCache(db), model="aitryon-plus", limits=ImageLimits()
        )
        runner = TryOnRunner(
            store=store,
            intake=intake,
            client=client,
            scheduler=TryOnScheduler(SchedulerLimits(max_concurrent=max_concurrent)),
            notifier=notifier,
            config=RunnerConfig(**{**FAST_RUNNER, **config}),
            garments=KeptGarments(intake, client, CropStore(db)),
        )
        opened.append((runner, db, http))
        return Rig(runner, store, notifier, files, ds, db)

    yield build
    for runner, db, http in opened:
        await runner.stop()
        await http.close()
        await db.close()
    await ds.close()


async def test_a_job_goes_through_every_stage_in_order(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig()
    job = rig.job()
    assert await rig.runner.launch(job) is None
    ended = await rig.ended(job.id)
    assert ended.state is JobState.DELIVERED and ended.result_message_id == 200
    assert ended.status_message_id == 100 and ended.task_id is not None
    stages = rig.notifier.stages_of(job.id)
    assert stages[:3] == [Stage.PREPARING, Stage.WAITING, Stage.SUBMITTING]
    assert stages[-1] is Stage.SENDING and Stage.GENERATING in stages
    assert [jid for jid, _ in rig.notifier.delivered] == [job.id]
    assert rig.notifier.ended_jobs == [(job.id, JobState.DELIVERED)]
    assert len(rig.ds.tasks) == 1


async def test_uploads_accepted_by_the_conversation_are_reused(
    make_rig: Callable[..., Any],
) -> None:
    rig: Rig = await make_rig()
    job = rig.job()
    accepted = await rig.runner.intake.accept(job.person)  # as the handler does
    assert accepted == job.person  # checked; its upload runs in the background
    await rig.runner.launch(job)
    assert (await rig.ended(job.id)).state is JobState.DELIVERED
    assert rig.files.downloads == 2  # person once (accept), top once (pipeline)
    assert len(rig.ds.uploads) == 2


FAILED_TASKS = [
    ("InvalidPerson", FailureKind.INVALID_PERSON),
    ("InvalidGarment", FailureKind.INVALID_GARMENT),
    ("InvalidInputLength", FailureKind.INVALID_SIZE),
    ("DataInspectionFailed", FailureKind.CONTENT_REFUSED),
    ("InternalError", FailureKind.SERVER_ERROR),
    ("InternalError.Timeout", FailureKind.TIMEOUT),
    ("InvalidURL", FailureKind.INVALID_URL),
    ("InvalidParameter", FailureKind.INVALID_INPUT),
    ("SomethingNew", FailureKind.UNKNOWN),
]


@pytest.mark.parametrize(("code", "kind"), FAILED_TASKS)
async def test_a_failed_task_ends_with_its_failure_kind(
    make_rig: Callable[..., Any], code: str, kind: FailureKind
) -> None:
    rig: Rig = await make_rig()
    rig.ds.script_next_task("FAILED", code)
    if kind is FailureKind.INVALID_URL:  # an input it cannot fetch is uploaded again once
        rig.ds.script_next_task("FAILED", code)
    job = rig.job()
    await rig.runner.launch(job)
    ended = await rig.ended(job.id)
    assert ended.state is JobState.FAILED and ended.failure is kind
    assert rig.notifier.failures == [(job.id, kind)]
    assert rig.notifier.delivered == []


SUBMIT_ERRORS = [
    (400, "InvalidParameter", FailureKind.INVALID_INPUT),
    (401, "InvalidApiKey", FailureKind.SERVICE_UNAVAILABLE),
    (400, "Arrearage", FailureKind.SERVICE_UNAVAILABLE),
]


@pytest.mark.parametrize(("status", "code", "kind"), SUBMIT_ERRORS)
async def test_a_refused_submit_ends_with_its_failure_kind_and_no_task(
    make_rig: Callable[..., Any], status: int, code: str, kind: FailureKind
) -> None:
    rig: Rig = await make_rig()
    rig.ds.fail_next("submit", status, code, count=5)
    job = rig.job()
    await rig.runner.launch(job)
    ended = await rig.ended(job.id)
    assert ended.failure is kind and ended.state is JobState.FAILED
    assert rig.ds.tasks == {}


@pytest.mark.parametrize("fault", ["reset", "502", "504", "500"])
async def test_a_lost_submit_answer_is_reconciled_never_resubmitted(
    make_rig: Callable[..., Any], fault: str
) -> None:
    rig: Rig = await make_rig()
    if fault == "reset":
        rig.ds.drop_next("submit")  # the task is created, its answer lost
    elif fault == "500":
        rig.ds.fail_next("submit", 500, "InternalError", after_processing=True)
    else:
        rig.ds.submit_then_fail(int(fault))
    job = rig.job()
    await rig.runner.launch(job)
    ended = await rig.ended(job.id)
    assert ended.state is JobState.DELIVERED and ended.task_id in rig.ds.tasks
    assert len(rig.ds.tasks) == 1 and rig.ds.requests["submit"] == 1
    assert rig.ds.list_calls >= 1 and rig.notifier.failures == []


async def test_reconcile_without_a_task_asks_the_user(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig()
    rig.ds.fail_next("submit", 502)  # a gateway page, and really nothing was created
    job = rig.job()
    await rig.runner.launch(job)
    ended = await rig.ended(job.id)
    assert ended.failure is FailureKind.SUBMIT_UNKNOWN and ended.state is JobState.INTERRUPTED
    assert rig.ds.tasks == {} and rig.ds.list_calls == 4  # listed again: tasks show up late
    assert rig.notifier.failures == [(job.id, FailureKind.SUBMIT_UNKNOWN)]


async def test_reconcile_with_several_unowned_tasks_asks_the_user(
    make_rig: Callable[..., Any],
) -> None:
    rig: Rig = await make_rig()
    stray = rig.job()
    person = await rig.runner.intake.ensure_uploaded(stray.person)
    top = await rig.runner.intake.ensure_uploaded(stray.top or stray.person)
    assert person.url and top.url
    await rig.runner.client.submit(person.url, top.url, None)  # not owned by any job
    rig.ds.submit_then_fail(502)
    job = rig.job()
    await rig.runner.launch(job)
    ended = await rig.ended(job.id)
    assert ended.failure is FailureKind.SUBMIT_UNKNOWN and ended.task_id is None
    assert len(rig.ds.tasks) == 2


async def test_reconcile_ignores_tasks_owned_by_other_jobs(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig()
    first = rig.job()
    await rig.runner.launch(first)
    owned = await rig.ended(first.id)
    rig.ds.submit_then_fail(504)
    job = rig.job()
    await rig.runner.launch(job)
    ended = await rig.ended(job.id)
    assert ended.state is JobState.DELIVERED
    assert ended.task_id != owned.task_id and ended.task_id in rig.ds.tasks
    assert len(rig.ds.tasks) == 2


async def test_reconcile_waits_for_another_unresolved_submit(
    make_rig: Callable[..., Any],
) -> None:
    rig: Rig = await make_rig()
    other = await stored_in(rig, JobState.INTERRUPTED, error_kind="submit_unknown")
    await rig.store.update(other, submit_intent_at=rig.runner._clock())
    rig.ds.submit_then_fail(502)
    job = rig.job()
    await rig.runner.launch(job)
    ended = await rig.ended(job.id)
    # Its task might be the other job's: not proven, so the user is asked.
    assert ended.failure is FailureKind.SUBMIT_UNKNOWN and len(rig.ds.tasks) == 1


async def test_throttling_at_submit_waits_in_line(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig()
    rig.ds.fail_for("submit", 0.8, 429, "Throttling.AllocationQuota")
    job = rig.job()
    await rig.runner.launch(job)
    ended = await rig.ended(job.id)
    assert ended.state is JobState.DELIVERED and len(rig.ds.tasks) == 1
    assert Stage.BUSY in rig.notifier.stages_of(job.id)


async def test_overload_at_submit_waits_then_gives_up(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig(busy_patience=0.5)
    rig.ds.fail_for("submit", 30, 503, "ModelUnavailable")
    job = rig.job()
    await rig.runner.launch(job)
    ended = await rig.ended(job.id)
    assert ended.failure is FailureKind.SERVER_ERROR and rig.ds.tasks == {}
    assert rig.ds.requests["submit"] > 4


async def test_an_input_dashscope_cannot_fetch_is_uploaded_again_once(
    make_rig: Callable[..., Any],
) -> None:
    rig: Rig = await make_rig()
    job = rig.job()
    person = await rig.runner.intake.ensure_uploaded(job.person)
    assert person.url is not None
    rig.ds.vanish(person.url.removeprefix("oss://"))
    await rig.runner.launch(replace(job, person=person))
    ended = await rig.ended(job.id)
    assert ended.state is JobState.DELIVERED
    assert ended.person.url != person.url and len(rig.ds.tasks) == 2  # one failed, free


@pytest.mark.parametrize(
    ("setup", "kind"),
    [
        ("missing", FailureKind.TELEGRAM),
        ("too_big", FailureKind.IMAGE_FILE_TOO_LARGE),
        ("not_an_image", FailureKind.IMAGE_UNSUPPORTED_FORMAT),
        ("tiny", FailureKind.IMAGE_TOO_SMALL),
    ],
)
async def test_inputs_that_cannot_be_used_end_the_job_before_any_task(
    make_rig: Callable[..., Any], setup: str, kind: FailureKind
) -> None:
    rig: Rig = await make_rig()
    job = rig.job(top=InputImage("bad", "u-bad"))
    if setup == "too_big":
        rig.files.too_big.add("bad")
    elif setup == "not_an_image":
        rig.files.files["bad"] = b"%PDF-1.4 not a picture" * 100
    elif setup == "tiny":
        rig.files.files["bad"] = jpeg(100, 100)
    await rig.runner.launch(job)
    ended = await rig.ended(job.id)
    assert ended.failure is kind and ended.state is JobState.FAILED
    assert rig.ds.tasks == {}


async def test_a_task_that_never_ends_times_out(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig(task_deadline=0.3)
    rig.ds.hold_tasks()
    job = rig.job()
    await rig.runner.launch(job)
    ended = await rig.ended(job.id)
    assert ended.failure is FailureKind.TIMEOUT


async def test_a_forgotten_task_ends_as_expired(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig()
    rig.ds.hold_tasks()
    job = rig.job()
    await rig.runner.launch(job)
    await rig.reached(job.id, Stage.GENERATING)
    stored = await rig.store.get(job.id)
    assert stored is not None and stored.task_id is not None
    rig.ds.forget(stored.task_id)
    assert (await rig.ended(job.id)).failure is FailureKind.TASK_EXPIRED


async def test_an_expired_result_ends_as_expired(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig()
    first = rig.job()
    await rig.runner.launch(first)
    done = await rig.ended(first.id)
    rig.ds.expire_results()
    job = await stored_in(rig, JobState.SUCCEEDED, result_url=done.result_url)
    await rig.runner.resume()
    assert (await rig.ended(job.id)).failure is FailureKind.TASK_EXPIRED


async def test_a_result_telegram_cannot_take_now_is_retried_not_failed(
    make_rig: Callable[..., Any],
) -> None:
    rig: Rig = await make_rig()
    rig.notifier.defer_next = 2
    job = rig.job()
    await rig.runner.launch(job)
    ended = await rig.ended(job.id)
    assert ended.state is JobState.DELIVERED and rig.notifier.failures == []
    assert len(rig.ds.tasks) == 1


async def test_a_result_download_that_runs_out_of_retries_is_retried_later(
    make_rig: Callable[..., Any],
) -> None:
    rig: Rig = await make_rig()
    rig.ds.fail_next("result", 502, count=3)  # the client gives up after 2 attempts
    job = rig.job()
    await rig.runner.launch(job)
    ended = await rig.ended(job.id)
    assert ended.state is JobState.DELIVERED and rig.notifier.failures == []


async def test_a_blocked_user_gets_the_result_when_back(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig()
    rig.notifier.blocked = True
    job = rig.job()
    await rig.runner.launch(job)
    ended = await rig.ended(job.id)
    assert ended.state is JobState.UNDELIVERED and rig.notifier.failures == []
    waiting = await rig.store.undelivered_for(job.chat_id, job.user_id, 0)
    assert [j.id for j in waiting] == [job.id]
    rig.notifier.blocked = False
    rig.notifier.ended_jobs.clear()
    assert await rig.runner.redeliver(waiting[0])
    again = await rig.ended(job.id)
    assert again.state is JobState.DELIVERED and len(rig.ds.tasks) == 1


async def test_a_chat_that_refuses_the_result(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig()
    rig.notifier.refuse_delivery = True
    job = rig.job()
    await rig.runner.launch(job)
    ended = await rig.ended(job.id)
    assert ended.failure is FailureKind.UNDELIVERABLE


async def test_a_migrated_chat_is_followed(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig()
    rig.notifier.move_to_chat = -1009
    job = rig.job(chat_id=-1, user_id=7)
    await rig.runner.launch(job)
    ended = await rig.ended(job.id)
    assert ended.state is JobState.DELIVERED and ended.chat_id == -1009


async def test_cancel_while_waiting_for_a_slot(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig(max_concurrent=1)
    rig.ds.hold_tasks()
    first, second = rig.job(user_id=1), rig.job(user_id=2)
    await rig.runner.launch(first)
    await rig.reached(first.id, Stage.GENERATING)
    await rig.runner.launch(second)
    await rig.reached(second.id, Stage.WAITING)
    outcomes = await rig.runner.cancel(second.chat_id, 2)
    assert [outcome for _, outcome in outcomes] == [CancelOutcome.CANCELED]
    ended = await rig.ended(second.id)
    assert ended.state is JobState.CANCELED and ended.task_id is None
    assert len(rig.ds.tasks) == 1


async def test_cancel_while_pending_at_the_service_cancels_the_task(
    make_rig: Callable[..., Any],
) -> None:
    rig: Rig = await make_rig()
    rig.ds.pending_seconds = 5.0
    job = rig.job()
    await rig.runner.launch(job)
    await rig.reached(job.id, Stage.QUEUED_REMOTE)
    outcomes = await rig.runner.cancel(job.chat_id, job.user_id)
    assert [outcome for _, outcome in outcomes] == [CancelOutcome.CANCELED]
    ended = await rig.ended(job.id)
    assert ended.state is JobState.CANCELED and ended.failure is FailureKind.CANCELED


async def test_cancel_while_generating_is_too_late(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig()
    rig.ds.hold_tasks()
    job = rig.job()
    await rig.runner.launch(job)
    await rig.reached(job.id, Stage.GENERATING)
    stored = await rig.store.get(job.id)
    assert stored is not None and stored.task_id is not None
    task_id = stored.task_id
    await rig.ds.wait_for(lambda: rig.ds.statuses().get(task_id) == "RUNNING")
    outcomes = await rig.runner.cancel(job.chat_id, job.user_id)
    assert [outcome for _, outcome in outcomes] == [CancelOutcome.TOO_LATE]
    rig.ds.complete(task_id)
    assert (await rig.ended(job.id)).state is JobState.DELIVERED


async def test_cancel_after_the_result_is_too_late(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig()
    job = rig.job()
    await rig.runner.launch(job)
    await rig.ended(job.id)
    assert await rig.runner.cancel(job.chat_id, job.user_id) == []


async def test_cancel_during_submit_lets_it_finish(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig()
    rig.ds.delay_next("submit", 0.5)
    job = rig.job()
    await rig.runner.launch(job)
    await rig.reached(job.id, Stage.SUBMITTING)
    await rig.ds.wait_for(lambda: rig.ds.requests["submit"] == 1)  # on the wire
    outcomes = await rig.runner.cancel(job.chat_id, job.user_id)
    assert [outcome for _, outcome in outcomes] == [CancelOutcome.SUBMITTING]
    assert (await rig.ended(job.id)).state is JobState.DELIVERED


async def stored_in(rig: Rig, state: JobState, **columns: Any) -> Job:
    job = rig.job(state=state, status_message_id=100, **columns)
    await rig.store.create(job)
    if columns:
        await rig.store.update(job, **columns)
    return job


async def test_resume_a_queued_job(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig()
    job = await stored_in(rig, JobState.QUEUED)
    assert await rig.runner.resume() == 1
    assert (await rig.ended(job.id)).state is JobState.DELIVERED
    assert len(rig.ds.tasks) == 1


async def test_resume_a_running_job_polls_its_task(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig()
    first = rig.job()
    await rig.runner.launch(first)
    await rig.ended(first.id)
    task_id = next(iter(rig.ds.tasks))
    job = await stored_in(rig, JobState.RUNNING, task_id=task_id, submitted_at=0.0)
    await rig.runner.resume()
    ended = await rig.ended(job.id)
    assert ended.state is JobState.DELIVERED and len(rig.ds.tasks) == 1


async def test_resume_a_succeeded_job_delivers_without_a_task(
    make_rig: Callable[..., Any],
) -> None:
    rig: Rig = await make_rig()
    first = rig.job()
    await rig.runner.launch(first)
    done = await rig.ended(first.id)
    job = await stored_in(rig, JobState.SUCCEEDED, result_url=done.result_url)
    await rig.runner.resume()
    assert (await rig.ended(job.id)).state is JobState.DELIVERED
    assert len(rig.ds.tasks) == 1


async def test_resume_a_submitting_job_without_a_task_asks_the_user(
    make_rig: Callable[..., Any],
) -> None:
    rig: Rig = await make_rig()
    job = await stored_in(rig, JobState.SUBMITTING, submit_intent_at=rig.runner._clock())
    await rig.runner.resume()
    stored = await rig.ended(job.id)
    assert stored.state is JobState.INTERRUPTED
    assert rig.notifier.failures == [(job.id, FailureKind.INTERRUPTED)]
    assert rig.ds.tasks == {}


async def test_resume_a_submitting_job_adopts_its_task(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig()
    base = rig.job()
    person = await rig.runner.intake.ensure_uploaded(base.person)
    top = await rig.runner.intake.ensure_uploaded(base.top or base.person)
    assert person.url and top.url
    intent = rig.runner._clock()
    task = await rig.runner.client.submit(person.url, top.url, None)  # then the crash
    job = await stored_in(rig, JobState.SUBMITTING, submit_intent_at=intent)
    await rig.runner.resume()
    ended = await rig.ended(job.id)
    assert ended.state is JobState.DELIVERED and ended.task_id == task.task_id
    assert len(rig.ds.tasks) == 1


async def test_resume_a_failing_job_tells_the_user(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig()
    job = await stored_in(rig, JobState.FAILING, error_kind="invalid_garment")
    await rig.runner.resume()
    ended = await rig.ended(job.id)
    assert ended.state is JobState.FAILED
    assert rig.notifier.failures == [(job.id, FailureKind.INVALID_GARMENT)]


async def test_finished_jobs_are_not_resumed(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig()
    for state in (JobState.DELIVERED, JobState.FAILED, JobState.CANCELED, JobState.INTERRUPTED):
        await stored_in(rig, state)
    assert await rig.runner.resume() == 0


async def test_stop_keeps_unfinished_jobs_for_the_next_start(
    make_rig: Callable[..., Any],
) -> None:
    rig: Rig = await make_rig()
    rig.ds.hold_tasks()
    job = rig.job()
    await rig.runner.launch(job)
    await rig.reached(job.id, Stage.GENERATING)
    await rig.runner.stop()
    stored = await rig.store.get(job.id)
    assert stored is not None and stored.state is JobState.RUNNING
    restarted: Rig = await make_rig()
    assert await restarted.runner.resume() == 1
    assert stored.task_id is not None
    rig.ds.complete(stored.task_id)
    assert (await restarted.ended(job.id)).state is JobState.DELIVERED
    assert len(rig.ds.tasks) == 1


def test_every_failure_kind_is_either_transient_or_final() -> None:
    """'Try again' (same inputs) is offered only where a new attempt may work."""
    assert FailureKind.THROTTLED.transient and FailureKind.INTERRUPTED.transient
    assert not FailureKind.INVALID_PERSON.transient
    assert not FailureKind.IMAGE_TOO_SMALL.transient
    assert FailureKind.SERVICE_UNAVAILABLE.operator_problem
    assert FailureKind.parse("no-such-kind") is FailureKind.UNKNOWN


async def test_a_button_under_a_notice_sees_the_final_state(make_rig: Callable[..., Any]) -> None:
    """ "Try again" can be pressed while the job that sent the notice still records how it
    ended: `settled` waits for that, so the press is not refused."""
    rig: Rig = await make_rig()
    rig.notifier.notice_gate = asyncio.Event()
    rig.ds.script_next_task("FAILED", "InternalError")
    job = rig.job()
    await rig.runner.launch(job)

    async def notice_sent() -> None:
        while not rig.notifier.failures:
            rig.notifier.changed.clear()
            await rig.notifier.changed.wait()

    await asyncio.wait_for(notice_sent(), 10)
    stored = await rig.store.get(job.id)
    assert stored is not None and stored.state is JobState.FAILING
    settling = asyncio.create_task(rig.runner.settled(stored))
    rig.notifier.notice_gate.set()
    assert (await settling).state is JobState.FAILED
