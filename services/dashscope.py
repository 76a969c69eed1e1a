"""Async client for DashScope aitryon: temp-storage upload, task submit/query/cancel, download.

Facts (JSON shapes, headers, limits) come from ``/work/shared/reference/dashscope-api.md``.
Only throttling, server errors, timeouts and connection errors are retried; a submit that
may have reached DashScope is never repeated, because every task is billed.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import random
import re
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from services.ratelimit import SlidingWindowLimiter

log = logging.getLogger(__name__)

SUBMIT_PATH = "/services/aigc/image2image/image-synthesis"
MISSING_GARMENT = (
    "Missing clothing image.Please input at least one top garment or bottom garment image."
)


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
CODE_DEADLINE = "DeadlineExceeded"

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
    CODE_DEADLINE: ErrorKind.TIMEOUT,
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


@dataclass(frozen=True)
class UploadPolicy:
    """A getPolicy credential; reusable for several uploads until it expires."""

    policy: str
    signature: str
    upload_dir: str
    upload_host: str
    oss_access_key_id: str
    x_oss_object_acl: str
    x_oss_forbid_overwrite: str
    expire_in_seconds: float
    max_file_size_mb: float
    obtained_at: float  # time.monotonic() when the request was sent

    def valid_for(self, margin: float = 30.0) -> bool:
        """True if the credential stays valid for at least ``margin`` more seconds."""
        return time.monotonic() + margin < self.obtained_at + self.expire_in_seconds


@dataclass(frozen=True)
class TaskState:
    task_id: str
    status: str
    image_url: str | None = None
    code: str | None = None
    message: str | None = None
    request_id: str | None = None

    TERMINAL: ClassVar[frozenset[str]] = frozenset({"SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN"})

    @property
    def is_terminal(self) -> bool:
        """Unrecognised statuses (SUSPENDED, future ones) are not terminal: keep polling."""
        return self.status in self.TERMINAL

    def error(self) -> DashScopeError | None:
        """The failure a terminal non-success state stands for; None otherwise."""
        if self.status == "FAILED":
            return DashScopeError(
                self.code or "Unknown", self.message or "", request_id=self.request_id
            )
        if self.status == "UNKNOWN":
            return DashScopeError(
                CODE_TASK_UNKNOWN,
                f"task {self.task_id} is unknown (expired or never existed)",
                request_id=self.request_id,
            )
        if self.status == "CANCELED":
            return DashScopeError(
                CODE_TASK_CANCELED, f"task {self.task_id} was canceled", request_id=self.request_id
            )
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; ``attempts`` counts the first try."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0  # cap on a server's Retry-After

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(0.0, ceiling)


@dataclass(frozen=True)
class _Reply:
    endpoint: str
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json_object(self) -> dict[str, Any] | None:
        """The body as a JSON object, only if labelled JSON (as the official SDK does)."""
        if "json" not in self.headers.get("Content-Type", "").lower():
            return None
        try:
            value = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None
        return value if isinstance(value, dict) else None

    def malformed(self, what: str) -> DashScopeError:
        return DashScopeError(
            CODE_MALFORMED,
            f"unexpected {self.endpoint} response: {what}",
            request_id=_request_id(self),
            http_status=self.status,
        )


ErrorParser = Callable[[_Reply], DashScopeError]


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _retry_after(reply: _Reply) -> float | None:
    try:
        return float(reply.headers.get("Retry-After", ""))
    except ValueError:
        return None  # absent, or an HTTP date: fall back to our own backoff


def _request_id(reply: _Reply) -> str | None:
    body = reply.json_object()
    if body is not None and _opt_str(body.get("request_id")):
        return str(body["request_id"])
    return reply.headers.get("x-oss-request-id") or reply.headers.get("x-request-id")


def _json_error(reply: _Reply) -> DashScopeError:
    """DashScope errors: ``{"code","message"|"msg","request_id"}``; anything else is "Unknown"."""
    body = reply.json_object() or {}
    message = _opt_str(body.get("message")) or _opt_str(body.get("msg"))
    if message is None:
        message = reply.body[:200].decode("utf-8", "replace").strip() or f"HTTP {reply.status}"
    return DashScopeError(
        _opt_str(body.get("code")) or "Unknown",
        message,
        request_id=_request_id(reply),
        http_status=reply.status,
        retry_after=_retry_after(reply),
    )


def _xml_error(reply: _Reply) -> DashScopeError:
    """OSS errors: ``<Error><Code>..</Code><Message>..</Message><RequestId>..``."""
    code = message = request_id = None
    try:
        root = ET.fromstring(reply.body)
        code, message = root.findtext("Code"), root.findtext("Message")
        request_id = root.findtext("RequestId")
    except ET.ParseError:
        pass
    return DashScopeError(
        code or "Unknown",
        message or f"HTTP {reply.status}",
        request_id=request_id or reply.headers.get("x-oss-request-id"),
        http_status=reply.status,
        retry_after=_retry_after(reply),
    )


def _result_error(reply: _Reply) -> DashScopeError:
    """A signed result URL answers 403 once past ``Expires`` (404 once deleted)."""
    error = _xml_error(reply)
    if reply.status in (403, 404):
        return DashScopeError(
            CODE_RESULT_EXPIRED,
            f"result URL no longer valid: {error.code}: {error.message}",
            request_id=error.request_id,
            http_status=reply.status,
        )
    return error


_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,5}$")
_MIME = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".bmp": "image/bmp",
    ".heic": "image/heic",
    ".webp": "image/webp",
}


def _safe_suffix(filename: str) -> str:
    match = _SUFFIX.search(filename)
    return match.group(0).lower() if match else ""


def _parse_policy(reply: _Reply, obtained_at: float) -> UploadPolicy:
    data = (reply.json_object() or {}).get("data")
    if not isinstance(data, dict):
        raise reply.malformed("no data object")
    try:
        return UploadPolicy(
            policy=str(data["policy"]),
            signature=str(data["signature"]),
            upload_dir=str(data["upload_dir"]).rstrip("/"),
            upload_host=str(data["upload_host"]),
            oss_access_key_id=str(data["oss_access_key_id"]),
            x_oss_object_acl=str(data["x_oss_object_acl"]),
            x_oss_forbid_overwrite=str(data["x_oss_forbid_overwrite"]),
            expire_in_seconds=float(data["expire_in_seconds"]),
            max_file_size_mb=float(data["max_file_size_mb"]),
            obtained_at=obtained_at,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise reply.malformed(f"policy field {exc}") from None


def _parse_task(reply: _Reply, task_id: str) -> TaskState:
    body = reply.json_object() or {}
    output = body.get("output")
    if not isinstance(output, dict) or not _opt_str(output.get("task_status")):
        raise reply.malformed("no output.task_status")
    image_url = _opt_str(output.get("image_url"))
    results = output.get("results")
    if image_url is None and isinstance(results, list) and results:
        first = results[0]
        image_url = _opt_str(first.get("url")) if isinstance(first, dict) else None
    return TaskState(
        task_id=_opt_str(output.get("task_id")) or task_id,
        status=str(output["task_status"]),
        image_url=image_url,
        code=_opt_str(output.get("code")),
        message=_opt_str(output.get("message")),
        request_id=_opt_str(body.get("request_id")),
    )


class DashScopeClient:
    """One model, one API key; the caller owns the session and the limiters."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_key: str,
        base_url: str,
        model: str,
        retry: RetryPolicy = RetryPolicy(),
        request_timeout: float = 30.0,
        submit_limiter: SlidingWindowLimiter | None = None,
        query_limiter: SlidingWindowLimiter | None = None,
        policy_limiter: SlidingWindowLimiter | None = None,
        submit_session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._session = session
        # Submits are never resent once on the wire, so they should not ride a pooled
        # keep-alive connection the server may be closing: give them a force_close session.
        self._submit_session = submit_session or session
        self._api_key = api_key
        self._base = base_url.rstrip("/")
        self.model = model
        self._retry = retry
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._submit_limiter = submit_limiter
        self._query_limiter = query_limiter
        self._policy_limiter = policy_limiter

    async def get_upload_policy(self) -> UploadPolicy:
        url = URL(self._base + "/uploads").with_query(action="getPolicy", model=self.model)
        obtained_at = time.monotonic()
        reply = await self._call(
            "policy", "GET", url, headers=self._auth(), limiter=self._policy_limiter
        )
        return _parse_policy(reply, obtained_at)

    async def upload(self, policy: UploadPolicy, data: bytes, filename: str) -> str:
        """Uploads under a fresh unique key (one per attempt, so never a 409); returns oss://key."""
        keys: list[str] = []

        def form() -> aiohttp.FormData:
            keys.append(f"{policy.upload_dir}/{uuid.uuid4().hex}{_safe_suffix(filename)}")
            return self._upload_form(policy, keys[-1], data, filename)

        await self._call("upload", "POST", URL(policy.upload_host), body=form, errors=_xml_error)
        return "oss://" + keys[-1]

    async def submit(
        self, person_url: str, top_url: str | None, bottom_url: str | None
    ) -> TaskState:
        """Creates a task. Raises SubmitOutcomeUnknown if the request may have been received."""
        if not top_url and not bottom_url:
            raise DashScopeError("InvalidGarment", MISSING_GARMENT)
        inputs = {"person_image_url": person_url}
        if top_url:
            inputs["top_garment_url"] = top_url
        if bottom_url:
            inputs["bottom_garment_url"] = bottom_url
        payload = json.dumps(
            {
                "model": self.model,
                "input": inputs,
                "parameters": {"resolution": -1, "restore_face": True},
            }
        ).encode()
        headers = {
            **self._auth(),
            "Content-Type": "application/json",
            "X-DashScope-Async": "enable",
        }
        if any(url.startswith("oss://") for url in inputs.values()):
            headers["X-DashScope-OssResourceResolve"] = "enable"
        reply = await self._call(
            "submit",
            "POST",
            URL(self._base + SUBMIT_PATH),
            headers=headers,
            body=lambda: payload,
            limiter=self._submit_limiter,
            resend_after_sent=False,
            session=self._submit_session,
        )
        return self._submitted_task(reply)

    async def query(self, task_id: str) -> TaskState:
        reply = await self._call(
            "query",
            "GET",
            self._task_url(task_id),
            headers=self._auth(),
            limiter=self._query_limiter,
        )
        return _parse_task(reply, task_id)

    async def cancel(self, task_id: str) -> bool:
        """True if the task was canceled; False if it is no longer PENDING."""
        try:
            await self._call(
                "cancel",
                "POST",
                self._task_url(task_id) / "cancel",
                headers=self._auth(),
                limiter=self._query_limiter,
            )
        except DashScopeError as error:
            if error.code != "UnsupportedOperation":
                raise
            if error.attempts == 1:
                return False
            # An earlier attempt may have canceled it before its answer was lost.
            return (await self.query(task_id)).status == "CANCELED"
        return True

    async def download_result(self, url: str) -> bytes:
        """Fetches a result image; its URL is pre-signed, so no Authorization header."""
        reply = await self._call("result", "GET", URL(url, encoded=True), errors=_result_error)
        return reply.body

    # -- internals -----------------------------------------------------------------------

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"}

    def _task_url(self, task_id: str) -> URL:
        return URL(self._base + "/tasks") / task_id

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "<api-key>") if self._api_key else text

    @staticmethod
    def _upload_form(
        policy: UploadPolicy, key: str, data: bytes, filename: str
    ) -> aiohttp.FormData:
        """Fields in the documented order; OSS requires ``file`` to be the last one."""
        form = aiohttp.FormData()
        form.add_field("OSSAccessKeyId", policy.oss_access_key_id)
        form.add_field("policy", policy.policy)
        form.add_field("Signature", policy.signature)
        form.add_field("key", key)
        form.add_field("x-oss-object-acl", policy.x_oss_object_acl)
        form.add_field("x-oss-forbid-overwrite", policy.x_oss_forbid_overwrite)
        form.add_field("success_action_status", "200")
        content_type = _MIME.get(_safe_suffix(filename), "application/octet-stream")
        form.add_field("file", data, filename=key.rsplit("/", 1)[-1], content_type=content_type)
        return form

    def _submitted_task(self, reply: _Reply) -> TaskState:
        try:
            state = _parse_task(reply, "")
        except DashScopeError as error:
            # 2xx without a task id: the task may well exist, we just cannot name it.
            raise SubmitOutcomeUnknown(
                CODE_SUBMIT_UNKNOWN, error.message, request_id=error.request_id
            ) from None
        if not state.task_id:
            raise SubmitOutcomeUnknown(
                CODE_SUBMIT_UNKNOWN, "submit answer has no task_id", request_id=state.request_id
            )
        if state.status == "UNKNOWN":
            raise DashScopeError(
                "UnexpectedStatus",
                f"task {state.task_id} is UNKNOWN right after submit",
                request_id=state.request_id,
                http_status=reply.status,
            )
        return state

    async def _call(
        self,
        endpoint: str,
        method: str,
        url: URL,
        *,
        headers: Mapping[str, str] | None = None,
        body: Callable[[], Any] | None = None,
        limiter: SlidingWindowLimiter | None = None,
        errors: ErrorParser = _json_error,
        resend_after_sent: bool = True,
        session: aiohttp.ClientSession | None = None,
    ) -> _Reply:
        """One logical request with retries; ``body`` builds a fresh payload per attempt.

        With ``resend_after_sent=False`` only failures before the request left (connect
        errors) are retried; a later timeout/disconnect raises SubmitOutcomeUnknown.
        """
        attempts = max(1, self._retry.attempts)
        for attempt in range(1, attempts + 1):
            try:
                async with limiter.slot() if limiter is not None else nullcontext():
                    reply = await self._once(
                        session or self._session, endpoint, method, url, headers, body
                    )
            except aiohttp.InvalidURL as exc:
                raise DashScopeError(CODE_MALFORMED, f"invalid URL: {exc}") from None
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                error = self._transport_error(CODE_NETWORK, exc)
            except (aiohttp.ClientError, TimeoutError) as exc:
                code = CODE_REQUEST_TIMEOUT if isinstance(exc, TimeoutError) else CODE_NETWORK
                if not resend_after_sent:
                    raise SubmitOutcomeUnknown(
                        CODE_SUBMIT_UNKNOWN,
                        self._redact(f"sent, but no answer ({code}: {exc!r})"),
                    ) from None
                error = self._transport_error(code, exc)
            else:
                if reply.status < 400:
                    return reply
                error = errors(reply)
                error.message = self._redact(error.message)
            error.attempts = attempt
            if not error.retryable or attempt == attempts:
                raise error
            delay = self._retry.delay(attempt, error.retry_after)
            log.warning(
                "dashscope %s attempt %d/%d failed: %s; retrying in %.2f s",
                endpoint, attempt, attempts, error, delay,
            )  # fmt: skip
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(
        self,
        session: aiohttp.ClientSession,
        endpoint: str,
        method: str,
        url: URL,
        headers: Mapping[str, str] | None,
        body: Callable[[], Any] | None,
    ) -> _Reply:
        data = body() if body is not None else None
        async with session.request(
            method, url, headers=headers, data=data, timeout=self._timeout, allow_redirects=False
        ) as response:
            reply = _Reply(endpoint, response.status, response.headers, await response.read())
        log.debug(
            "dashscope %s %s %s -> %d request_id=%s",
            endpoint, method, url.path, reply.status, _request_id(reply),
        )  # fmt: skip
        return reply

    def _transport_error(self, code: str, exc: BaseException) -> DashScopeError:
        return DashScopeError(code, self._redact(f"{type(exc).__name__}: {exc}"))
