"""What DashScope answers: upload credentials, task states, and parsing of raw replies.

Shapes come from the reference (dashscope-api.md §2-§6).
"""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from multidict import CIMultiDictProxy

from services.dashscope.errors import (
    CODE_MALFORMED,
    CODE_RESULT_EXPIRED,
    CODE_TASK_CANCELED,
    CODE_TASK_UNKNOWN,
    DashScopeError,
)


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
class Reply:
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
            request_id=request_id(self),
            http_status=self.status,
        )


ErrorParser = Callable[[Reply], DashScopeError]


def opt_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def retry_after(reply: Reply) -> float | None:
    try:
        return float(reply.headers.get("Retry-After", ""))
    except ValueError:
        return None  # absent, or an HTTP date: fall back to our own backoff


def request_id(reply: Reply) -> str | None:
    body = reply.json_object()
    if body is not None and opt_str(body.get("request_id")):
        return str(body["request_id"])
    return reply.headers.get("x-oss-request-id") or reply.headers.get("x-request-id")


def json_error(reply: Reply) -> DashScopeError:
    """DashScope errors: ``{"code","message"|"msg","request_id"}``; anything else is "Unknown"."""
    body = reply.json_object() or {}
    message = opt_str(body.get("message")) or opt_str(body.get("msg"))
    if message is None:
        message = reply.body[:200].decode("utf-8", "replace").strip() or f"HTTP {reply.status}"
    return DashScopeError(
        opt_str(body.get("code")) or "Unknown",
        message,
        request_id=request_id(reply),
        http_status=reply.status,
        retry_after=retry_after(reply),
    )


def xml_error(reply: Reply) -> DashScopeError:
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
        retry_after=retry_after(reply),
    )


def result_error(reply: Reply) -> DashScopeError:
    """A signed result URL answers 403 once past ``Expires`` (404 once deleted)."""
    error = xml_error(reply)
    if reply.status in (403, 404):
        return DashScopeError(
            CODE_RESULT_EXPIRED,
            f"result URL no longer valid: {error.code}: {error.message}",
            request_id=error.request_id,
            http_status=reply.status,
        )
    return error


SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,5}$")
MIME = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".bmp": "image/bmp",
    ".heic": "image/heic",
    ".webp": "image/webp",
}


def safe_suffix(filename: str) -> str:
    match = SUFFIX.search(filename)
    return match.group(0).lower() if match else ""


def parse_policy(reply: Reply, obtained_at: float) -> UploadPolicy:
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


def parse_task(reply: Reply, task_id: str) -> TaskState:
    body = reply.json_object() or {}
    output = body.get("output")
    if not isinstance(output, dict) or not opt_str(output.get("task_status")):
        raise reply.malformed("no output.task_status")
    image_url = opt_str(output.get("image_url"))
    results = output.get("results")
    if image_url is None and isinstance(results, list) and results:
        first = results[0]
        image_url = opt_str(first.get("url")) if isinstance(first, dict) else None
    return TaskState(
        task_id=opt_str(output.get("task_id")) or task_id,
        status=str(output["task_status"]),
        image_url=image_url,
        code=opt_str(output.get("code")),
        message=opt_str(output.get("message")),
        request_id=opt_str(body.get("request_id")),
    )


def parse_crop(reply: Reply) -> str | None:
    """aitryon-parsing-v1's answer for one clothes_type: the crop URL, None when absent."""
    body = reply.json_object() or {}
    output = body.get("output")
    crops = output.get("crop_img_url") if isinstance(output, dict) else None
    if not isinstance(crops, list) or len(crops) != 1:
        raise reply.malformed("no output.crop_img_url")
    return opt_str(crops[0])
