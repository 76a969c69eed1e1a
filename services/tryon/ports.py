"""What the try-on pipeline needs from the outside world, and nothing more.

The pipeline knows DashScope, images, storage and scheduling. Telegram (or a test)
plugs in behind these two interfaces: a `FileSource` that fetches the user's photos,
and a `Notifier` that shows progress and hands over the outcome.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from services.model import FailureKind, Job


class Stage(enum.StrEnum):
    """Where a job is, as its user would put it."""

    PREPARING = "preparing"  # checking and uploading the photos
    WAITING = "waiting"  # in the bot's line for one of the account's task slots
    SUBMITTING = "submitting"
    QUEUED_REMOTE = "queued_remote"  # accepted, but PENDING at DashScope (busy account)
    GENERATING = "generating"
    SENDING = "sending"
    BUSY = "busy"  # DashScope throttles or is overloaded: waiting in line with back-off


@dataclass(frozen=True)
class Receipt:
    """Where a message ended up: the chat may differ from the job's (group → supergroup)."""

    chat_id: int
    message_id: int | None


class Undeliverable(Exception):
    """The chat refuses messages for good (blocked, kicked, deleted, a bad request)."""


class Unreachable(Undeliverable):
    """The user blocked the bot (or left): nothing can reach them until they come back."""


class DeliveryDeferred(Exception):
    """Telegram cannot take the message now (an outage, a long flood wait, shutdown):
    nothing was posted; try again later."""


class DeliveryAmbiguous(Exception):
    """The send left but its answer was lost, twice: the message may have been posted
    (once or twice); it is not sent again."""


class FileUnavailable(Exception):
    """A user's file could not be fetched (the chat service is down or forgot it)."""


class FileSource(Protocol):
    async def download(self, file_id: str) -> bytes | bytearray:
        """The file's bytes; raises ImageRejected(FILE_TOO_LARGE) when the file is too big
        to fetch, FileUnavailable when it cannot be fetched now."""
        ...


class Notifier(Protocol):
    async def started(self, job: Job) -> Receipt:
        """A new job: show that it has begun (the receipt's message is its status line)."""
        ...

    def stage(self, job: Job, stage: Stage, position: int | None = None) -> None:
        """Progress; must not block (a status line is a courtesy, it may be skipped)."""
        ...

    async def deliver(self, job: Job, image: bytes) -> Receipt:
        """Hands the result to the user (a closed or deleted topic falls back to the chat's
        general thread). Raises Unreachable (blocked), Undeliverable (refused for good),
        DeliveryDeferred (not now: retry later) or DeliveryAmbiguous (maybe posted)."""
        ...

    async def failed(self, job: Job, kind: FailureKind) -> Receipt:
        """Tells the user how the job ended and what they can do."""
        ...

    async def finished(self, job: Job) -> None:
        """The job has ended either way: stop showing progress."""
        ...
