"""The try-on's vocabulary, shared by every room: jobs, their inputs, states and failures."""

from __future__ import annotations

import enum
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime


class JobState(enum.StrEnum):
    QUEUED = "queued"  # inputs known; not submitted yet (uploads may be done)
    SUBMITTING = "submitting"  # submit intent recorded; no task id yet
    RUNNING = "running"  # DashScope task id stored; polling
    SUCCEEDED = "succeeded"  # result URL known; not yet accepted by Telegram
    FAILING = "failing"  # outcome is a failure; the user has not been told yet
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELED = "canceled"
    INTERRUPTED = "interrupted"  # crashed between intent and task id: the user decides
    RETRIED = "retried"  # failed or interrupted, and the user ran it again as a new job


ACTIVE_STATES = (
    JobState.QUEUED,
    JobState.SUBMITTING,
    JobState.RUNNING,
    JobState.SUCCEEDED,
    JobState.FAILING,
)
# Try-ons that cost (or will cost) money count towards the daily quotas.
BILLABLE_STATES = (
    JobState.QUEUED,
    JobState.SUBMITTING,
    JobState.RUNNING,
    JobState.SUCCEEDED,
    JobState.DELIVERED,
)
SLOTS = ("person", "top", "bottom")


@dataclass(frozen=True)
class InputImage:
    file_id: str
    unique_id: str
    file_size: int | None = None
    url: str | None = None  # oss:// URL once uploaded
    url_expires_at: float | None = None  # not stored per image: jobs keep the earliest


@dataclass(frozen=True)
class Job:
    id: str
    chat_id: int
    user_id: int
    lang: str
    model: str
    person: InputImage
    top: InputImage | None = None
    bottom: InputImage | None = None
    thread_id: int | None = None
    request_message_id: int | None = None
    status_message_id: int | None = None
    state: JobState = JobState.QUEUED
    task_id: str | None = None
    task_status: str | None = None
    result_url: str | None = None
    error_kind: str | None = None
    error_code: str | None = None
    result_message_id: int | None = None
    uploads_expire_at: float | None = None
    created_at: float = field(default_factory=time.time)
    submit_intent_at: float | None = None
    submitted_at: float | None = None
    finished_at: float | None = None
    delivered_at: float | None = None

    def image(self, slot: str) -> InputImage | None:
        image: InputImage | None = getattr(self, slot)
        return image

    def inputs(self) -> dict[str, InputImage]:
        return {slot: img for slot in SLOTS if (img := self.image(slot)) is not None}


def utc_day(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]
