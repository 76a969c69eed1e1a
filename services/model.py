"""The try-on's vocabulary, shared by every room: jobs, their inputs, states and failures."""

from __future__ import annotations

import enum
import time
import uuid
from dataclasses import dataclass, field, replace
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
    # Paid and finished, but the user cannot receive it now (blocked the bot): offered
    # again when they come back (/start, /tryon) while its result URL lives (24 h).
    UNDELIVERED = "undelivered"


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
    JobState.UNDELIVERED,
)
RESULT_LIFETIME = 24 * 3600.0  # DashScope keeps a result URL this long (dashscope-api.md §5)
SLOTS = ("person", "top", "bottom")
GARMENT_SLOTS = ("top", "bottom")
CROP_LIFETIME = 24 * 3600.0  # aitryon-parsing-v1 crop URLs (and try-on results) last 24 h
GENDERS = ("woman", "man")  # aitryon-refiner's parameters.gender


class JobKind(enum.StrEnum):
    TRYON = "tryon"  # aitryon(-plus): person + garments → picture
    REFINE = "refine"  # aitryon-refiner: a try-on's inputs + its result → the HD picture


class FailureKind(enum.StrEnum):
    """Every way a try-on can end badly that its user may meet; each has one text."""

    INVALID_PERSON = "invalid_person"
    INVALID_GARMENT = "invalid_garment"
    INVALID_SIZE = "invalid_size"
    INVALID_URL = "invalid_url"
    INVALID_INPUT = "invalid_input"
    CONTENT_REFUSED = "content_refused"
    SERVICE_UNAVAILABLE = "service_unavailable"  # key, billing, model access: the operator's
    POLICY_EXPIRED = "policy_expired"
    THROTTLED = "throttled"
    SERVER_ERROR = "server_error"
    NETWORK = "network"
    TIMEOUT = "timeout"
    TASK_EXPIRED = "task_expired"  # the task or its result is gone at DashScope
    CANCELED = "canceled"
    INTERRUPTED = "interrupted"  # stopped between submit intent and task id
    SUBMIT_UNKNOWN = "submit_unknown"  # the submit's answer was lost
    TELEGRAM = "telegram"  # the input photos could not be fetched from Telegram
    UNDELIVERABLE = "undeliverable"  # the chat refuses the result
    UNKNOWN = "unknown"
    IMAGE_FILE_TOO_LARGE = "image_file_too_large"
    IMAGE_UNSUPPORTED_FORMAT = "image_unsupported_format"
    IMAGE_CORRUPT = "image_corrupt"
    IMAGE_TOO_SMALL = "image_too_small"
    IMAGE_TOO_MANY_PIXELS = "image_too_many_pixels"
    HD_EXPIRED = "hd_expired"  # HD asked for a try-on whose result is gone (24 h)
    HD_UNSUPPORTED = "hd_unsupported"  # the try-on was not made at full resolution/face

    @classmethod
    def parse(cls, value: str | None) -> FailureKind:
        """A kind read back from the database; unknown strings (older versions) → UNKNOWN."""
        try:
            return cls(value or cls.UNKNOWN)
        except ValueError:
            return cls.UNKNOWN

    @property
    def transient(self) -> bool:
        """Whether running the same inputs again may work ("Try again" makes sense)."""
        return self in _TRANSIENT

    @property
    def operator_problem(self) -> bool:
        return self is FailureKind.SERVICE_UNAVAILABLE


_TRANSIENT = frozenset(
    {
        FailureKind.THROTTLED,
        FailureKind.SERVER_ERROR,
        FailureKind.NETWORK,
        FailureKind.TIMEOUT,
        FailureKind.UNKNOWN,
        FailureKind.TELEGRAM,
        FailureKind.INTERRUPTED,
        FailureKind.TASK_EXPIRED,
        FailureKind.POLICY_EXPIRED,
        FailureKind.SUBMIT_UNKNOWN,
        FailureKind.UNDELIVERABLE,  # "Try again" sends the stored result again
    }
)


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
    kind: JobKind = JobKind.TRYON
    # "Keep mine": the garment slot ("top"/"bottom") the person's own garment fills, found
    # by aitryon-parsing-v1. kept_at is when it was parsed (None: not yet); kept_url is the
    # crop (None once parsed: nothing of that kind found, the model picks).
    keep: str | None = None
    kept_url: str | None = None
    kept_at: float | None = None
    # Made with resolution=-1, restore_face=true, as aitryon-refiner requires.
    refinable: bool = False
    # A refine job: the try-on's result URL and the person's gender; source = that try-on.
    coarse_url: str | None = None
    gender: str | None = None
    source_id: str | None = None
    # A batch (one garment of several tried on with the same person, issue 12): which
    # batch, this job's 1-based number in it, and how many jobs the batch has.
    batch_id: str | None = None
    batch_index: int | None = None
    batch_size: int | None = None
    result_file_id: str | None = None  # Telegram file id of the delivered result (/history)

    def image(self, slot: str) -> InputImage | None:
        image: InputImage | None = getattr(self, slot)
        return image

    def inputs(self) -> dict[str, InputImage]:
        return {slot: img for slot in SLOTS if (img := self.image(slot)) is not None}

    def kept_crop(self, now: float) -> str | None:
        """The kept garment's crop URL while it is valid (None: not parsed, none, expired)."""
        if self.kept_url is None or self.kept_at is None:
            return None
        return self.kept_url if self.kept_at + CROP_LIFETIME > now else None

    @property
    def kept_missing(self) -> bool:
        """Parsed, and the person wears no garment of the kept kind: the model picked one."""
        return self.keep is not None and self.kept_at is not None and self.kept_url is None

    def has_top(self) -> bool:
        """A top went into the try-on (sent, or the person's own): the refiner needs one."""
        return self.top is not None or (self.keep == "top" and self.kept_url is not None)

    @property
    def failure(self) -> FailureKind | None:
        return FailureKind.parse(self.error_kind) if self.error_kind else None

    def rerun(self) -> Job:
        """A new job with the same inputs, chat and user: a new task that the user asked for."""
        return Job(
            id=new_job_id(),
            chat_id=self.chat_id,
            thread_id=self.thread_id,
            user_id=self.user_id,
            lang=self.lang,
            model=self.model,
            person=self.person,
            top=self.top,
            bottom=self.bottom,
            request_message_id=self.request_message_id,
            kind=self.kind,
            keep=self.keep,
            kept_url=self.kept_url,
            kept_at=self.kept_at,
            coarse_url=self.coarse_url,
            gender=self.gender,
            source_id=self.source_id,
        )

    def another_take(self) -> Job:
        """The "Another take" button: the same inputs as a new task, replying to this result."""
        return replace(self.rerun(), request_message_id=self.result_message_id)


def utc_day(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]
