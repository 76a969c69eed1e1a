"""Async client for DashScope aitryon: temp-storage upload, task submit/query/cancel, download.

Facts (JSON shapes, headers, limits) come from ``/work/shared/reference/dashscope-api.md``.
Only throttling, server errors, timeouts and connection errors are retried; a submit that
may have reached DashScope is never repeated, because every task is billed.

A submit is resent only after an answer that proves no task was created: a 429
(``Throttling*``), a 4xx refusal, or 503 ``ModelUnavailable`` (a JSON refusal with a code,
given by the API layer before any task exists; dashscope-api.md §6). Any other 5xx (500
``InternalError``, a gateway's 502/504 page) and a connection lost after the request left
raise SubmitOutcomeUnknown: the caller reconciles it with the task list (`list_tasks`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
from yarl import URL

from services.dashscope.errors import (
    CODE_MALFORMED,
    CODE_NETWORK,
    CODE_REQUEST_TIMEOUT,
    CODE_SUBMIT_UNKNOWN,
    DashScopeError,
    SubmitOutcomeUnknown,
)
from services.dashscope.models import (
    MIME,
    ErrorParser,
    Reply,
    TaskState,
    UploadPolicy,
    json_error,
    parse_crop,
    parse_policy,
    parse_task,
    request_id,
    result_error,
    safe_suffix,
    xml_error,
)
from services.dashscope.ratelimit import SlidingWindowLimiter
from services.retry import RetryPolicy

log = logging.getLogger(__name__)

SUBMIT_PATH = "/services/aigc/image2image/image-synthesis"
PARSING_PATH = "/services/vision/image-process/process"
PARSING_MODEL = "aitryon-parsing-v1"
REFINER_MODEL = "aitryon-refiner"
# Sent with every try-on: the original size and the person's own face. aitryon-refiner
# (HD) only accepts results made this way (dashscope-api.md §7).
TRYON_PARAMETERS: dict[str, object] = {"resolution": -1, "restore_face": True}
CLOTHES_TYPE = {"top": "upper", "bottom": "lower"}
BEIJING = timezone(timedelta(hours=8))  # the list API's start_time/end_time are Beijing time
# 5xx answers to a submit that still prove no task was created (see the module docstring).
SUBMIT_REFUSALS_5XX = frozenset({"ModelUnavailable"})
LIST_PAGE_SIZE = 100
LIST_MAX_PAGES = 10
MISSING_GARMENT = (
    "Missing clothing image.Please input at least one top garment or bottom garment image."
)


@dataclass(frozen=True)
class ListedTask:
    """One entry of the task list (`GET /tasks`): enough to reconcile a lost submit."""

    task_id: str
    created_at: float | None  # epoch seconds, when the entry says
    model: str | None
    status: str | None


class DashScopeClient:
    """One model, one API key; the caller owns the session and the limiters."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_key: str,
        base_url: str,
        model: str,
        retry: RetryPolicy | None = None,
        request_timeout: float = 30.0,
        submit_limiter: SlidingWindowLimiter | None = None,
        query_limiter: SlidingWindowLimiter | None = None,
        submit_session: aiohttp.ClientSession | None = None,
        parse_limiter: SlidingWindowLimiter | None = None,
    ) -> None:
        self._session = session
        # Submits are never resent once on the wire, so they should not ride a pooled
        # keep-alive connection the server may be closing: give them a force_close session.
        self._submit_session = submit_session or session
        self._api_key = api_key
        self._base = base_url.rstrip("/")
        self.model = model
        self._retry = retry or RetryPolicy()
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._submit_limiter = submit_limiter
        self._query_limiter = query_limiter
        self._parse_limiter = parse_limiter

    @property
    def refinable(self) -> bool:
        """Whether try-ons are submitted the way aitryon-refiner requires."""
        return TRYON_PARAMETERS == {"resolution": -1, "restore_face": True}

    async def get_upload_policy(self, model: str | None = None) -> UploadPolicy:
        """An upload credential; files uploaded with it are only usable by `model`."""
        url = URL(self._base + "/uploads").with_query(action="getPolicy", model=model or self.model)
        obtained_at = time.monotonic()
        reply = await self._call("policy", "GET", url, headers=self._auth())
        return parse_policy(reply, obtained_at)

    async def upload(self, policy: UploadPolicy, data: bytes, filename: str) -> str:
        """Uploads under a fresh unique key (one per attempt, so never a 409); returns oss://key."""
        keys: list[str] = []

        def form() -> aiohttp.FormData:
            keys.append(f"{policy.upload_dir}/{uuid.uuid4().hex}{safe_suffix(filename)}")
            return self._upload_form(policy, keys[-1], data, filename)

        await self._call("upload", "POST", URL(policy.upload_host), body=form, errors=xml_error)
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
        return await self._create_task(
            {"model": self.model, "input": inputs, "parameters": dict(TRYON_PARAMETERS)}
        )

    async def submit_refine(
        self,
        person_url: str,
        top_url: str,
        bottom_url: str | None,
        coarse_url: str,
        gender: str,
    ) -> TaskState:
        """Creates an aitryon-refiner task (HD) for a try-on's result; same task API."""
        inputs = {
            "person_image_url": person_url,
            "top_garment_url": top_url,
            "coarse_image_url": coarse_url,
        }
        if bottom_url:
            inputs["bottom_garment_url"] = bottom_url
        return await self._create_task(
            {"model": REFINER_MODEL, "input": inputs, "parameters": {"gender": gender}}
        )

    async def parse(self, image_url: str, slot: str) -> str | None:
        """aitryon-parsing-v1 (synchronous): the crop of the person's garment in `slot`
        ("top"/"bottom"), or None when the person wears none of that kind."""
        body = json.dumps(
            {
                "model": PARSING_MODEL,
                "input": {"image_url": image_url},
                "parameters": {"clothes_type": [CLOTHES_TYPE[slot]]},
            }
        ).encode()
        headers = {**self._auth(), "Content-Type": "application/json"}
        if image_url.startswith("oss://"):
            headers["X-DashScope-OssResourceResolve"] = "enable"
        reply = await self._call(
            "parsing",
            "POST",
            URL(self._base + PARSING_PATH),
            headers=headers,
            body=lambda: body,
            limiter=self._parse_limiter,
        )
        return parse_crop(reply)

    async def _create_task(self, body: dict[str, Any]) -> TaskState:
        inputs: dict[str, str] = body["input"]
        payload = json.dumps(body).encode()
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

    async def list_tasks(
        self, start: float, end: float, *, model: str | None = None
    ) -> list[ListedTask]:
        """This model's tasks created between `start` and `end` (epoch seconds), newest
        first as the server gives them; every page up to LIST_MAX_PAGES."""
        found: list[ListedTask] = []
        for page in range(1, LIST_MAX_PAGES + 1):
            url = URL(self._base + "/tasks").with_query(
                start_time=_beijing(start - 1),
                end_time=_beijing(end + 1),
                model_name=model or self.model,
                page_no=str(page),
                page_size=str(LIST_PAGE_SIZE),
            )
            reply = await self._call("list", "GET", url, headers=self._auth())
            entries, total_pages = parse_task_list(reply)
            found.extend(task for task in entries if task.model is None or task.model == self.model)
            if not entries or total_pages is None or page >= total_pages:
                break
        return [
            task
            for task in found
            if task.created_at is None or start - 1 <= task.created_at <= end + 1
        ]

    async def query(self, task_id: str) -> TaskState:
        reply = await self._call(
            "query",
            "GET",
            self._task_url(task_id),
            headers=self._auth(),
            limiter=self._query_limiter,
        )
        return parse_task(reply, task_id)

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
        reply = await self._call("result", "GET", URL(url, encoded=True), errors=result_error)
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
        content_type = MIME.get(safe_suffix(filename), "application/octet-stream")
        form.add_field("file", data, filename=key.rsplit("/", 1)[-1], content_type=content_type)
        return form

    def _submitted_task(self, reply: Reply) -> TaskState:
        try:
            state = parse_task(reply, "")
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
        errors: ErrorParser = json_error,
        resend_after_sent: bool = True,
        session: aiohttp.ClientSession | None = None,
    ) -> Reply:
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
                if (
                    not resend_after_sent
                    and reply.status >= 500
                    and error.code not in SUBMIT_REFUSALS_5XX
                ):
                    # A 500 or a gateway's page does not prove that no task was created.
                    raise SubmitOutcomeUnknown(
                        CODE_SUBMIT_UNKNOWN,
                        f"answered http {reply.status} {error.code}: {error.message[:120]}",
                        request_id=error.request_id,
                        http_status=reply.status,
                    )
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
    ) -> Reply:
        data = body() if body is not None else None
        async with session.request(
            method, url, headers=headers, data=data, timeout=self._timeout, allow_redirects=False
        ) as response:
            reply = Reply(endpoint, response.status, response.headers, await response.read())
        log.debug(
            "dashscope %s %s %s -> %d request_id=%s",
            endpoint, method, url.path, reply.status, request_id(reply),
        )  # fmt: skip
        return reply

    def _transport_error(self, code: str, exc: BaseException) -> DashScopeError:
        return DashScopeError(code, self._redact(f"{type(exc).__name__}: {exc}"))


def _beijing(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, BEIJING).strftime("%Y%m%d%H%M%S")


def _epoch(value: object) -> float | None:
    """A list entry's time: epoch ms (recorded), epoch s, or a Beijing "YYYY-MM-DD hh:mm:ss"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value / 1000 if value > 10**11 else float(value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y%m%d%H%M%S"):
            try:
                parsed = datetime.strptime(text, fmt)
            except ValueError:
                continue
            return parsed.replace(tzinfo=BEIJING).timestamp()
        if text.isdigit():
            return _epoch(int(text))
        try:
            return datetime.fromisoformat(text).timestamp()
        except ValueError:
            return None
    return None


def parse_task_list(reply: Reply) -> tuple[list[ListedTask], int | None]:
    """Entries and page count of a task list, in any plausible shape: the recorded one
    (``data`` at the top level), or the same under ``output``; ``data``/``tasks``/``list``
    as the array (or ``data.list``); ``task_id``/``taskId``/``id``; creation as
    ``gmt_create``, ``submit_time`` or ``create_time`` in ms, s or Beijing text. Entries
    without a task id are skipped. Raises DashScopeError when no array of tasks is found."""
    body = reply.json_object()
    if body is None:
        raise DashScopeError(CODE_MALFORMED, "task list is not a JSON object")
    for envelope in (body, body.get("output"), body.get("data")):
        if not isinstance(envelope, Mapping):
            continue
        for key in ("data", "tasks", "list", "items"):
            raw = envelope.get(key)
            if isinstance(raw, list):
                return [t for e in raw if (t := _listed(e)) is not None], _pages(envelope)
    raise DashScopeError(CODE_MALFORMED, "task list has no array of tasks")


def _listed(entry: object) -> ListedTask | None:
    if not isinstance(entry, Mapping):
        return None
    task_id = next((str(v) for k in ("task_id", "taskId", "id") if (v := entry.get(k))), None)
    if task_id is None:
        return None
    times = ("gmt_create", "submit_time", "create_time", "gmtCreate", "start_time")
    created = next((t for k in times if (t := _epoch(entry.get(k))) is not None), None)
    model = entry.get("model_name") or entry.get("model")
    status = entry.get("status") or entry.get("task_status")
    return ListedTask(
        task_id, created, str(model) if model else None, str(status) if status else None
    )


def _pages(envelope: Mapping[str, Any]) -> int | None:
    for key in ("total_page", "total_pages", "totalPage"):
        value = envelope.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None
