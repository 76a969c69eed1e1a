"""DashScope and OSS errors, and the one mapping from an error to what the bot does about it."""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    INVALID_PERSON = "invalid_person"
    INVALID_GARMENT = "invalid_garment"
    INVALID_SIZE = "invalid_size"
    INVALID_URL = "invalid_url"
    CONTENT_REFUSED = "content_refused"
    SERVICE_UNAVAILABLE = "service_unavailable"  # key, billing, model access: operator problem
    POLICY_EXPIRED = "policy_expired"  # the upload credential expired: fetch a new one
    THROTTLED = "throttled"
    SERVER_ERROR = "server_error"
    NETWORK = "network"
    TASK_EXPIRED = "task_expired"  # UNKNOWN task or expired result URL
    CANCELED = "canceled"
    TIMEOUT = "timeout"  # InternalError.Timeout or the caller's overall deadline
    INVALID_INPUT = "invalid_input"
    UNKNOWN = "unknown"


RETRYABLE = frozenset({ErrorKind.THROTTLED, ErrorKind.SERVER_ERROR, ErrorKind.NETWORK})

# Codes this module (or its callers) make up for conditions without a server code.
CODE_NETWORK = "NetworkError"
CODE_REQUEST_TIMEOUT = "RequestTimeout"
CODE_SUBMIT_UNKNOWN = "SubmitOutcomeUnknown"
CODE_MALFORMED = "MalformedResponse"
CODE_TASK_UNKNOWN = "TaskUnknown"
CODE_TASK_CANCELED = "TaskCanceled"
CODE_RESULT_EXPIRED = "ResultExpired"

_KIND_BY_CODE: dict[str, ErrorKind] = {
    "InvalidPerson": ErrorKind.INVALID_PERSON,
    "InvalidGarment": ErrorKind.INVALID_GARMENT,
    "InvalidInputLength": ErrorKind.INVALID_SIZE,
    "InvalidFile.Resolution": ErrorKind.INVALID_SIZE,
    "InvalidFile.Size": ErrorKind.INVALID_SIZE,
    "EntityTooLarge": ErrorKind.INVALID_SIZE,
    "EntityTooSmall": ErrorKind.INVALID_SIZE,
    "InvalidParameter.DataInspection": ErrorKind.INVALID_URL,
    "data_inspection_failed": ErrorKind.CONTENT_REFUSED,
    "InvalidApiKey": ErrorKind.SERVICE_UNAVAILABLE,
    "Arrearage": ErrorKind.SERVICE_UNAVAILABLE,
    "Model.AccessDenied": ErrorKind.SERVICE_UNAVAILABLE,
    "AllocationQuota.FreeTierOnly": ErrorKind.SERVICE_UNAVAILABLE,
    "ModelNotFound": ErrorKind.SERVICE_UNAVAILABLE,
    "InvalidAccessKeyId": ErrorKind.SERVICE_UNAVAILABLE,
    "SignatureDoesNotMatch": ErrorKind.SERVICE_UNAVAILABLE,
    "ModelUnavailable": ErrorKind.SERVER_ERROR,
    "InternalError.Timeout": ErrorKind.TIMEOUT,
    CODE_NETWORK: ErrorKind.NETWORK,
    CODE_REQUEST_TIMEOUT: ErrorKind.NETWORK,
    CODE_SUBMIT_UNKNOWN: ErrorKind.NETWORK,
    CODE_TASK_UNKNOWN: ErrorKind.TASK_EXPIRED,
    CODE_RESULT_EXPIRED: ErrorKind.TASK_EXPIRED,
    CODE_TASK_CANCELED: ErrorKind.CANCELED,
}
# Families by the part before the first dot (Throttling.RateQuota, AccessDenied.Unpurchased...).
_KIND_BY_FAMILY: dict[str, ErrorKind] = {
    "Throttling": ErrorKind.THROTTLED,
    "AccessDenied": ErrorKind.SERVICE_UNAVAILABLE,
    "InternalError": ErrorKind.SERVER_ERROR,
    "InvalidURL": ErrorKind.INVALID_URL,
    "DataInspectionFailed": ErrorKind.CONTENT_REFUSED,
    "InvalidParameter": ErrorKind.INVALID_INPUT,
    "BadRequest": ErrorKind.INVALID_INPUT,
}
# Same code, different meaning: told apart by the message.
_KIND_BY_MESSAGE: tuple[tuple[str, str, ErrorKind], ...] = (
    ("AccessDenied", "Policy expired", ErrorKind.POLICY_EXPIRED),
    ("InvalidParameter", "Model not exist", ErrorKind.SERVICE_UNAVAILABLE),
    ("InvalidParameter", "Download the media resource", ErrorKind.INVALID_URL),
)


def classify(code: str, message: str = "", http_status: int | None = None) -> ErrorKind:
    """The one mapping from a DashScope/OSS error to what the bot should do about it."""
    for known_code, fragment, kind in _KIND_BY_MESSAGE:
        if code == known_code and fragment in message:
            return kind
    if code in _KIND_BY_CODE:
        return _KIND_BY_CODE[code]
    family = code.split(".", 1)[0]
    if family in _KIND_BY_FAMILY:
        return _KIND_BY_FAMILY[family]
    if http_status == 429:
        return ErrorKind.THROTTLED
    if http_status is not None and http_status >= 500:
        return ErrorKind.SERVER_ERROR
    if http_status in (401, 403, 404):
        return ErrorKind.SERVICE_UNAVAILABLE
    if http_status is not None and 400 <= http_status < 500:
        return ErrorKind.INVALID_INPUT
    return ErrorKind.UNKNOWN


class DashScopeError(Exception):
    """An error answered by DashScope/OSS, or a transport failure talking to them."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        request_id: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.http_status = http_status
        self.retry_after = retry_after  # seconds, from a Retry-After header
        self.attempts = 1  # how many requests the client made before giving up

    @property
    def kind(self) -> ErrorKind:
        return classify(self.code, self.message, self.http_status)

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE

    def __str__(self) -> str:
        details = [f"http {self.http_status}"] if self.http_status is not None else []
        if self.request_id:
            details.append(f"request_id {self.request_id}")
        suffix = f" ({', '.join(details)})" if details else ""
        return f"{self.code}: {self.message}{suffix}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self})"


class SubmitOutcomeUnknown(DashScopeError):
    """The submit was sent but no answer came back: a task may exist (and be billed)."""

    @property
    def retryable(self) -> bool:
        return False
