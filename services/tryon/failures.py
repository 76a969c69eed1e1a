"""The one place that decides which FailureKind an error means for the user."""

from __future__ import annotations

from services.dashscope import DashScopeError, ErrorKind, SubmitOutcomeUnknown
from services.images.normalize import ImageRejected
from services.model import FailureKind
from services.tryon.ports import FileUnavailable, Undeliverable


class Failure(Exception):
    """Ends a job with a message the user can act on."""

    def __init__(self, kind: FailureKind, code: str | None = None) -> None:
        super().__init__(kind.value)
        self.kind = kind
        self.code = code


_BY_ERROR_KIND: dict[ErrorKind, FailureKind] = {
    ErrorKind.INVALID_PERSON: FailureKind.INVALID_PERSON,
    ErrorKind.INVALID_GARMENT: FailureKind.INVALID_GARMENT,
    ErrorKind.INVALID_SIZE: FailureKind.INVALID_SIZE,
    ErrorKind.INVALID_URL: FailureKind.INVALID_URL,
    ErrorKind.CONTENT_REFUSED: FailureKind.CONTENT_REFUSED,
    ErrorKind.SERVICE_UNAVAILABLE: FailureKind.SERVICE_UNAVAILABLE,
    ErrorKind.POLICY_EXPIRED: FailureKind.POLICY_EXPIRED,
    ErrorKind.THROTTLED: FailureKind.THROTTLED,
    ErrorKind.SERVER_ERROR: FailureKind.SERVER_ERROR,
    ErrorKind.NETWORK: FailureKind.NETWORK,
    ErrorKind.TASK_EXPIRED: FailureKind.TASK_EXPIRED,
    ErrorKind.CANCELED: FailureKind.CANCELED,
    ErrorKind.TIMEOUT: FailureKind.TIMEOUT,
    ErrorKind.INVALID_INPUT: FailureKind.INVALID_INPUT,
    ErrorKind.UNKNOWN: FailureKind.UNKNOWN,
}


def failure_of(error: BaseException) -> Failure:
    """Maps any error that ended a job to what its user is told (and the service's code)."""
    if isinstance(error, Failure):
        return error
    if isinstance(error, ImageRejected):
        try:
            return Failure(FailureKind(f"image_{error.reason.value}"))
        except ValueError:
            return Failure(FailureKind.IMAGE_CORRUPT)
    if isinstance(error, SubmitOutcomeUnknown):
        return Failure(FailureKind.SUBMIT_UNKNOWN, error.code)
    if isinstance(error, DashScopeError):
        return Failure(_BY_ERROR_KIND[error.kind], error.code)
    if isinstance(error, FileUnavailable):
        return Failure(FailureKind.TELEGRAM)
    if isinstance(error, Undeliverable):
        return Failure(FailureKind.UNDELIVERABLE)
    return Failure(FailureKind.UNKNOWN)
