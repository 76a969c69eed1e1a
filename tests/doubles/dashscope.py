"""A local stand-in for DashScope (aitryon) and its OSS temp-storage host, for tests and the bench.

One aiohttp server on 127.0.0.1 plays three hosts, as ``/work/shared/reference/dashscope-api.md``
describes them:

* ``/api/v1/...``: getPolicy, task submit/query/cancel/list (JSON errors, HTTP 200 for FAILED
  and UNKNOWN tasks, 10 RPS submit and 20 QPS query sliding windows, 5 tasks out of PENDING);
* ``/oss``: the OSS PostObject upload host (signed policy, XML errors with ``x-oss-ec``);
* ``/results/<task>.jpg``: pre-signed result URLs that answer 403 once expired.

Tests script it (``script_next_task``, ``fail_next``, ``drop_next``, ``delay_next``, ``hold``)
and observe it (``submits``, ``query_times``, ``uploads``...); ``wait_for`` waits on any change.

Standalone: ``python -m tests.doubles.dashscope --port 8000`` prints the base URL and serves
until SIGTERM; ``GET /_double/stats`` returns the observation counters as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import io
import json
import signal
import socket
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote, unquote
from xml.sax.saxutils import escape

from aiohttp import BodyPartReader, web
from PIL import Image, ImageDraw

API_PREFIX = "/api/v1"
SUBMIT_PATH = "/services/aigc/image2image/image-synthesis"
OSS_ACCESS_KEY_ID = "LTAI5tDoubleAccessKeyId"
OSS_SECRET = b"double-oss-secret"  # signs policies and result URLs
BUCKET = "dashscope-file-mgr"
RESULT_BUCKET = "dashscope-result-bj"
ACCOUNT_HASH = "52afe077fb4825c6d74411758cb1ab98"
MAX_FILE_SIZE_MB = 100
CAPACITY_LIMIT_MB = 999999999
POLICY_QPS = 100
BEIJING = timezone(timedelta(hours=8))
MIN_IMAGE_BYTES, MAX_IMAGE_BYTES = 5 * 1024, 5 * 1024 * 1024
MIN_SIDE, MAX_SIDE = 150, 4096
IMAGE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "HEIF", "WEBP"})
RESOLUTIONS = {1024: (576, 1024), 1280: (720, 1280)}

ENDPOINTS = ("policy", "upload", "submit", "query", "cancel", "list", "result")
XML_ENDPOINTS = frozenset({"upload", "result", "file"})
Endpoint = Literal["policy", "upload", "submit", "query", "cancel", "list", "result"]

# Messages as recorded in the reference (typos included).
MESSAGES = {
    "InvalidParameter": "The request is missing required parameters or in a wrong format, "
    "please check the parameters that you send.",
    "InvalidURL": "The request URL is invalid, please check the request URL is available and "
    "the request image format is one of the following types: JPEG, JPG, PNG, BMP, and WEBP.",
    "InvalidPerson": "The input image has no human body or multi human bodies. "
    "Please upload other image with single person.",
    "InvalidGarment": "Missing clothing image.Please input at least one top garment or bottom "
    "garment image.",
    "InvalidInputLength": "The image resolution is invalid, please make sure that the largest "
    "length of image is smaller than 4096, and the smallest length of image is larger than 150. "
    "and the size of image ranges from 5KB to 5MB.",
    "InvalidApiKey": "Invalid API-key provided.",
    "AccessDenied": "Access denied.",
    "Arrearage": "Access denied, please make sure your account is in good standing.",
    "DataInspectionFailed": "Input or output data may contain inappropriate content.",
    "Throttling": "Requests throttling triggered.",
    "Throttling.RateQuota": "Requests rate limit exceeded, please try again later.",
    "InternalError": "An internal error has occured, please try again later or contact "
    "service support.",
    "InternalError.Timeout": "An internal timeout error has occured during execution, please "
    "try again later or contact service support.",
    "ModelUnavailable": "Model is unavailable, please try again later.",
    "ModelNotFound": "Model can not be found.",
    "UnsupportedOperation": "Failed to cancel the task, please confirm if the task is in "
    "PENDING status.",
    "BadRequest.IllegalInput": "The input parameter requires json format.",
    "BadRequest.EmptyModel": 'Required parameter "model" missing from request.',
    "BadRequest.EmptyInput": "Required input parameter missing from request.",
}
SYNC_DENIED = "current user api does not support synchronous calls."
MODEL_NOT_EXIST = "Model not exist."
GATEWAY_BODY = (
    "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
)

# OSS: code -> (message, EC). Only the two documented ECs are real; the rest are placeholders.
OSS_ERRORS = {
    "AccessDenied": ("AccessDenied", "0003-00000001"),
    "PolicyExpired": ("Invalid according to Policy: Policy expired.", "0006-00000213"),
    "SignatureDoesNotMatch": (
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
        "0002-00000705",
    ),
    "InvalidAccessKeyId": (
        "The OSS Access Key Id you provided does not exist in our records.",
        "0002-00000902",
    ),
    "MalformedPOSTRequest": (
        "The body of your POST request is not well-formed multipart/form-data",
        "0006-00000201",
    ),
    "InvalidArgument": ("Invalid argument.", "0006-00000202"),
    "InvalidPolicyDocument": ("Invalid Policy: Invalid JSON.", "0006-00000203"),
    "EntityTooLarge": ("Your proposed upload exceeds the maximum allowed size.", "0006-00000214"),
    "EntityTooSmall": (
        "Your proposed upload is smaller than the minimum allowed size.",
        "0006-00000215",
    ),
    "FileAlreadyExists": (
        "The object you specified already exists and can not be overwritten.",
        "0015-00000101",
    ),
    "NoSuchKey": ("The specified key does not exist.", "0026-00000001"),
    "RequestExpired": ("Request has expired.", "0002-00000069"),
    "InternalError": ("We encountered an internal error. Please try again.", "0001-00000001"),
    "ServiceUnavailable": ("Please reduce your request rate.", "0001-00000503"),
}

_DEFAULT_JSON_ERROR = {
    400: "InvalidParameter",
    401: "InvalidApiKey",
    403: "AccessDenied",
    404: "ModelNotFound",
    429: "Throttling",
    500: "InternalError",
    503: "ModelUnavailable",
}
_DEFAULT_XML_ERROR = {
    400: "InvalidArgument",
    403: "AccessDenied",
    404: "NoSuchKey",
    409: "FileAlreadyExists",
    500: "InternalError",
    503: "ServiceUnavailable",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TASK_ID = web.RequestKey("task_id", str)  # set by the submit handler for the middleware


class _Rejected(Exception):
    """A task input that fails the task with ``code``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class _Dropped(Exception):
    """Raised after closing the connection so that no response is written."""


@dataclass
class Outcome:
    status: Literal["SUCCEEDED", "FAILED"]
    code: str | None = None
    message: str | None = None


@dataclass(eq=False)
class FakeTask:
    task_id: str
    model: str
    body: dict[str, Any]
    oss_resolve: bool
    submit_time: float
    request_id: str
    held: bool = False
    outcome: Outcome | None = None
    status: str = "PENDING"
    scheduled_time: float | None = None
    end_time: float | None = None
    image_url: str | None = None
    code: str | None = None
    message: str | None = None
    released: asyncio.Event = field(default_factory=asyncio.Event)
    slot: asyncio.Event = field(default_factory=asyncio.Event)
    runner: asyncio.Task[None] | None = None

    @property
    def inputs(self) -> dict[str, str]:
        value = self.body.get("input")
        return value if isinstance(value, dict) else {}


@dataclass
class StoredObject:
    data: bytes
    model: str | None
    expires_at: float


@dataclass
class StoredResult:
    data: bytes
    expires_at: float


@dataclass
class _Fault:
    action: Literal["fail", "drop", "delay"]
    status: int = 0
    code: str | None = None
    message: str | None = None
    retry_after: float | None = None
    seconds: float = 0.0
    process: bool = True


class _Window:
    """Server-side sliding window: admits at most ``rate`` requests per ``period`` seconds."""

    def __init__(self, rate: int, period: float = 1.0) -> None:
        self.rate, self.period = rate, period
        self._times: deque[float] = deque()

    def admit(self) -> bool:
        now = time.monotonic()
        while self._times and now - self._times[0] >= self.period:
            self._times.popleft()
        if len(self._times) >= self.rate:
            return False
        self._times.append(now)
        return True


def _uuid() -> str:
    return str(uuid.uuid4())


def _oss_request_id() -> str:
    return uuid.uuid4().hex[:24].upper()


def _beijing(ts: float) -> str:
    return datetime.fromtimestamp(ts, BEIJING).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _sign(data: bytes) -> str:
    return base64.b64encode(hmac.new(OSS_SECRET, data, hashlib.sha1).digest()).decode()


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body, ensure_ascii=False),
        content_type="application/json",
        charset="UTF-8",
        headers={"Server": "istio-envoy", **(headers or {})},
    )


def json_error(
    status: int, code: str, message: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    """DashScope's error shape: ``{"code","message","request_id"}`` at the top level."""
    text = message if message is not None else MESSAGES.get(code, code)
    return _json(status, {"code": code, "message": text, "request_id": _uuid()}, headers)


def xml_error(
    status: int, code: str, message: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    """OSS's error shape: an ``<Error>`` document plus ``x-oss-ec``/``x-oss-request-id``."""
    default_message, ec = OSS_ERRORS.get(code, (code, "0000-00000000"))
    if code == "PolicyExpired":
        code = "AccessDenied"
    request_id = _oss_request_id()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n'
        f"  <Code>{escape(code)}</Code>\n"
        f"  <Message>{escape(message if message is not None else default_message)}</Message>\n"
        f"  <RequestId>{request_id}</RequestId>\n"
        f"  <HostId>{BUCKET}.oss-cn-beijing.aliyuncs.com</HostId>\n"
        f"  <EC>{ec}</EC>\n"
        f"  <RecommendDoc>https://api.aliyun.com/troubleshoot?q={ec}</RecommendDoc>\n"
        "</Error>\n"
    )
    return web.Response(
        status=status,
        text=body,
        content_type="application/xml",
        headers={
            "Server": "AliyunOSS",
            "x-oss-request-id": request_id,
            "x-oss-ec": ec,
            **(headers or {}),
        },
    )


def make_image(width: int, height: int, seed: str = "", fmt: str = "JPEG") -> bytes:
    """A noisy test image (noise keeps JPEGs above DashScope's 5 KB minimum)."""
    digest = hashlib.sha256(seed.encode()).digest()
    image = Image.effect_noise((width, height), 60).convert("RGB")
    image = Image.blend(image, Image.new("RGB", (width, height), tuple(digest[:3])), 0.5)
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def _register_heif() -> None:
    with contextlib.suppress(ImportError):
        import pillow_heif

        pillow_heif.register_heif_opener()


def _inspect(data: bytes) -> tuple[int, int]:
    """Applies aitryon's input rules; returns (width, height) or raises _Rejected."""
    if not MIN_IMAGE_BYTES <= len(data) <= MAX_IMAGE_BYTES:
        raise _Rejected("InvalidInputLength")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in IMAGE_FORMATS:
                raise _Rejected("InvalidURL")
            image.load()
            width, height = image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        raise _Rejected("InvalidInputLength") from None
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE:
        raise _Rejected("InvalidInputLength")
    return width, height


def _inspect_all(blobs: list[bytes]) -> list[tuple[int, int]]:
    _register_heif()
    return [_inspect(blob) for blob in blobs]


def _render_result(task_id: str, person: bytes, size: tuple[int, int]) -> bytes:
    """The 'try-on': the person image tinted with a colour derived from the task id."""
    tint = tuple(hashlib.sha256(task_id.encode()).digest()[:3])
    try:
        with Image.open(io.BytesIO(person)) as source:
            base = source.convert("RGB").resize(size)
    except (OSError, ValueError):
        base = Image.new("RGB", size, (128, 128, 128))
    result = Image.blend(base, Image.new("RGB", size, tint), 0.35)
    ImageDraw.Draw(result).text((10, 10), task_id, fill=(255, 255, 255))
    out = io.BytesIO()
    result.save(out, "JPEG", quality=85)
    return out.getvalue()


class FakeDashScope:
    """DashScope + OSS temp storage + result host, in one local aiohttp server."""

    def __init__(
        self,
        *,
        api_key: str = "sk-test-key",
        models: tuple[str, ...] = ("aitryon-plus", "aitryon"),
        pending_seconds: float = 0.05,
        running_seconds: float = 0.2,
        max_concurrent: int = 5,
        submit_rps: int = 10,
        query_qps: int = 20,
        policy_ttl: float = 300,
        upload_ttl: float = 48 * 3600,
        result_ttl: float = 24 * 3600,
        task_ttl: float = 24 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_key = api_key
        self.models = models
        self.pending_seconds = pending_seconds
        self.running_seconds = running_seconds
        self.max_concurrent = max_concurrent
        self.policy_ttl = policy_ttl
        self.upload_ttl = upload_ttl
        self.result_ttl = result_ttl
        self.task_ttl = task_ttl
        self.clock = clock
        self.hold = False  # new tasks wait in RUNNING for complete()/fail()
        # Observation (every arrival is counted, faults and throttled ones included).
        self.requests: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()
        self.submits: list[dict[str, Any]] = []
        self.query_times: list[float] = []
        self.policy_calls = 0
        self.uploads: dict[str, bytes] = {}
        self.upload_count = 0
        self.cancels: list[str] = []
        self.max_running_seen = 0
        self.tasks: dict[str, FakeTask] = {}
        # State.
        self.objects: dict[str, StoredObject] = {}
        self.results: dict[str, StoredResult] = {}
        self.files: dict[str, bytes] = {}
        self._issued: dict[str, str] = {}  # policy (base64) -> model
        self._scripted: deque[Outcome] = deque()
        self._faults: dict[str, deque[_Fault]] = {}
        self._submit_window = _Window(submit_rps)
        self._query_window = _Window(query_qps)
        self._policy_windows: dict[str, _Window] = {}
        self._waiting: deque[FakeTask] = deque()
        self._running: set[str] = set()
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._origin = ""

    # -- lifecycle --------------------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        self._add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        site = web.SockSite(self._runner, sock)
        await site.start()
        self._origin = f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def close(self) -> None:
        self._closing.set()
        runners = [t.runner for t in self.tasks.values() if t.runner and not t.runner.done()]
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDashScope:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def origin(self) -> str:
        if not self._origin:
            raise RuntimeError("FakeDashScope is not started")
        return self._origin

    @property
    def base_url(self) -> str:
        """The DASHSCOPE_HTTP_BASE_URL to give the client."""
        return self.origin + API_PREFIX

    @property
    def upload_host(self) -> str:
        return self.origin + "/oss"

    def _add_routes(self, app: web.Application) -> None:
        routes = (
            ("GET", API_PREFIX + "/uploads", self._get_policy, "policy"),
            ("POST", "/oss", self._post_object, "upload"),
            ("POST", "/oss/", self._post_object, "upload"),
            ("POST", API_PREFIX + SUBMIT_PATH, self._submit, "submit"),
            ("POST", API_PREFIX + SUBMIT_PATH + "/", self._submit, "submit"),
            ("GET", API_PREFIX + "/tasks/{task_id}", self._query, "query"),
            ("POST", API_PREFIX + "/tasks/{task_id}/cancel", self._cancel, "cancel"),
            ("GET", API_PREFIX + "/tasks", self._list, "list"),
            ("GET", "/results/{name}", self._get_result, "result"),
            ("GET", "/files/{name}", self._get_file, "file"),
            ("GET", "/_double/stats", self._stats, "stats"),
        )
        for method, path, handler, name in routes:
            suffix = ".slash" if path.endswith("/") else ""  # names must be unique identifiers
            app.router.add_route(method, path, handler, name=name + suffix)

    # -- scripting -------------------------------------------------------------------

    def script_next_task(
        self,
        status: Literal["SUCCEEDED", "FAILED"] = "FAILED",
        code: str | None = "InvalidPerson",
        message: str | None = None,
    ) -> None:
        """Queues the outcome of the next submitted task (in submit order)."""
        if status == "FAILED" and message is None and code is not None:
            message = MESSAGES.get(code, code)
        self._scripted.append(Outcome(status, code, message))

    def fail_next(
        self,
        endpoint: Endpoint,
        status: int,
        code: str | None = None,
        message: str | None = None,
        count: int = 1,
        *,
        retry_after: float | None = None,
    ) -> None:
        """The next ``count`` requests to ``endpoint`` get this HTTP error, unprocessed."""
        fault = _Fault("fail", status, code, message, retry_after=retry_after)
        self._add_fault(endpoint, fault, count)

    def drop_next(self, endpoint: Endpoint, count: int = 1, *, process: bool = True) -> None:
        """Close the connection without answering; with ``process`` the request takes effect
        first (a submit creates its task), as when a reply is lost on the way back."""
        self._add_fault(endpoint, _Fault("drop", process=process), count)

    def delay_next(self, endpoint: Endpoint, seconds: float, count: int = 1) -> None:
        """Process the request, then hold the reply ``seconds`` (to trip client timeouts)."""
        self._add_fault(endpoint, _Fault("delay", seconds=seconds), count)

    def _add_fault(self, endpoint: str, fault: _Fault, count: int) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {ENDPOINTS}")
        self._faults.setdefault(endpoint, deque()).extend([fault] * count)

    def hold_tasks(self, on: bool = True) -> None:
        self.hold = on

    def complete(self, task_id: str) -> None:
        """Lets a held task finish successfully."""
        self._release(task_id, Outcome("SUCCEEDED"))

    def fail(self, task_id: str, code: str = "InvalidPerson", message: str | None = None) -> None:
        """Lets a held task fail with ``code``."""
        self._release(task_id, Outcome("FAILED", code, message or MESSAGES.get(code, code)))

    def set_status(self, task_id: str, status: str) -> None:
        """Forces a reported status (e.g. SUSPENDED); the task's own progress goes on."""
        self._set_status(self.tasks[task_id], status)

    def forget(self, task_id: str) -> None:
        """The task becomes UNKNOWN, as after its 24 h retention."""
        task = self.tasks.pop(task_id, None)
        if task is not None and task.runner is not None:
            task.runner.cancel()
        self._notify()

    def expire_results(self) -> None:
        for result in self.results.values():
            result.expires_at = float("-inf")

    def add_file(self, name: str, data: bytes) -> str:
        """Publishes ``data`` at an http URL the double accepts as task input."""
        self.files[name] = data
        return f"{self.origin}/files/{quote(name)}"

    def _release(self, task_id: str, outcome: Outcome) -> None:
        task = self.tasks[task_id]
        task.outcome = outcome
        task.released.set()

    # -- observation -----------------------------------------------------------------

    def max_queries_in_window(self, window: float = 1.0) -> int:
        return _max_in_window(self.query_times, window)

    def max_submits_in_window(self, window: float = 1.0) -> int:
        return _max_in_window([record["time"] for record in self.submits], window)

    @property
    def queued_for_slot(self) -> int:
        """PENDING tasks past their queueing time, held back only by max_concurrent."""
        return len(self._waiting)

    def statuses(self) -> dict[str, str]:
        return {task_id: task.status for task_id, task in self.tasks.items()}

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,
    ) -> None:
        """Returns once ``predicate()`` holds; re-checked on every request and task change."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed = self._changed
                    if predicate():
                        return
                    await changed.wait()
        except TimeoutError:
            raise TimeoutError(f"condition not met within {timeout} s") from None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def stats(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "throttled": dict(self.throttled),
            "submits": len(self.submits),
            "policy_calls": self.policy_calls,
            "upload_count": self.upload_count,
            "cancels": len(self.cancels),
            "max_running_seen": self.max_running_seen,
            "max_queries_in_window": self.max_queries_in_window(),
            "max_submits_in_window": self.max_submits_in_window(),
            "statuses": dict(Counter(task.status for task in self.tasks.values())),
        }

    # -- middleware: observation and fault injection ----------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        endpoint = (request.match_info.route.name or "other").split(".")[0]
        self.requests[endpoint] += 1
        record = await self._observe(endpoint, request)
        queue = self._faults.get(endpoint)
        fault = queue.popleft() if queue else None
        try:
            response = await self._respond(endpoint, request, handler, fault)
        except _Dropped:
            raise asyncio.CancelledError from None  # aiohttp then closes without replying
        finally:
            if record is not None:
                record["task_id"] = request.get(TASK_ID)  # also when the reply is dropped
            self._notify()
        if record is not None:
            record["status"] = response.status
        return response

    async def _observe(self, endpoint: str, request: web.Request) -> dict[str, Any] | None:
        now = time.monotonic()
        if endpoint == "query":
            self.query_times.append(now)
        elif endpoint == "policy":
            self.policy_calls += 1
        elif endpoint == "cancel":
            self.cancels.append(request.match_info["task_id"])
        elif endpoint == "submit":
            raw = await request.read()
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = None
            record: dict[str, Any] = {
                "time": now,
                "body": body,
                "headers": {
                    k: v for k, v in request.headers.items() if k.lower() != "authorization"
                },
                "status": None,
                "task_id": None,
            }
            self.submits.append(record)
            return record
        return None

    async def _respond(
        self, endpoint: str, request: web.Request, handler: Handler, fault: _Fault | None
    ) -> web.StreamResponse:
        if fault is None:
            return await handler(request)
        if fault.action == "fail":
            await request.read()
            return self._fault_response(endpoint, fault)
        if fault.action == "delay":
            response = await handler(request)
            with contextlib.suppress(TimeoutError):  # cut short by close()
                await asyncio.wait_for(self._closing.wait(), fault.seconds)
            return response
        if fault.process:
            await handler(request)
        else:
            await request.read()
        if request.transport is not None:
            request.transport.abort()
        raise _Dropped

    def _fault_response(self, endpoint: str, fault: _Fault) -> web.Response:
        headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
        if endpoint in XML_ENDPOINTS:
            code = fault.code or _DEFAULT_XML_ERROR.get(fault.status, "InternalError")
            return xml_error(fault.status, code, fault.message, headers)
        if fault.code is None and fault.status in (502, 504):
            return web.Response(status=fault.status, text=GATEWAY_BODY, headers=headers)
        code = fault.code or _DEFAULT_JSON_ERROR.get(fault.status, "InternalError")
        if endpoint == "policy" and code == "Throttling":
            code = "Throttling.RateQuota"
        return json_error(fault.status, code, fault.message, headers)

    def _check_auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if not header:
            return json_error(401, "InvalidApiKey", "No API-key provided.")
        if header != f"Bearer {self.api_key}":
            return json_error(401, "InvalidApiKey")
        return None

    # -- getPolicy ---------------------------------------------------------------------

    async def _get_policy(self, request: web.Request) -> web.Response:
        if (denied := self._check_auth(request)) is not None:
            return denied
        model = request.query.get("model", "")
        if request.query.get("action") != "getPolicy" or not model:
            return json_error(400, "InvalidParameter")
        if model not in self.models:
            return json_error(400, "InvalidParameter", MODEL_NOT_EXIST)
        if not self._policy_windows.setdefault(model, _Window(POLICY_QPS)).admit():
            self.throttled["policy"] += 1
            return json_error(429, "Throttling.RateQuota")
        request_id = _uuid()
        return _json(200, {"data": self.issue_policy(model, request_id), "request_id": request_id})

    def issue_policy(
        self, model: str, request_id: str = "", *, max_bytes: int | None = None
    ) -> dict[str, Any]:
        """getPolicy's ``data``: a signed credential for uploads under a fresh ``upload_dir``."""
        now = self.clock()
        day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
        upload_dir = f"dashscope-instant/{ACCOUNT_HASH}/{day}/{request_id or _uuid()}"
        limit = MAX_FILE_SIZE_MB * 1024 * 1024 if max_bytes is None else max_bytes
        policy = self._policy_document(upload_dir, now + self.policy_ttl, limit)
        self._issued[policy] = model
        ttl = self.policy_ttl
        return {
            "policy": policy,
            "signature": _sign(policy.encode()),
            "upload_dir": upload_dir,
            "upload_host": self.upload_host,
            "expire_in_seconds": int(ttl) if float(ttl).is_integer() else ttl,
            "max_file_size_mb": MAX_FILE_SIZE_MB,
            "capacity_limit_mb": CAPACITY_LIMIT_MB,
            "oss_access_key_id": OSS_ACCESS_KEY_ID,
            "x_oss_object_acl": "private",
            "x_oss_forbid_overwrite": "true",
        }

    @staticmethod
    def _policy_document(upload_dir: str, expires_at: float, max_bytes: int) -> str:
        expiration = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
        document = {
            "expiration": expiration[:-3] + "Z",
            "conditions": [
                ["content-length-range", 0, max_bytes],
                ["starts-with", "$key", upload_dir],
                {"bucket": BUCKET},
                {"x-oss-object-acl": "private"},
                {"x-oss-forbid-overwrite": "true"},
            ],
        }
        text = json.dumps(document, separators=(",", ":")).replace("/", "\\/")
        return base64.b64encode(text.encode()).decode()

    # -- OSS PostObject --------------------------------------------------------------

    async def _post_object(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/form-data"):
            return xml_error(400, "MalformedPOSTRequest")
        try:
            fields, data = await self._read_form(request)
        except _FormError as error:
            return xml_error(400, error.code, error.message)
        except (ValueError, AssertionError, UnicodeDecodeError):
            return xml_error(400, "MalformedPOSTRequest")
        problem = self._check_upload(fields, data)
        if problem is not None:
            return problem
        key = fields["key"]
        model = self._issued.get(fields["policy"])
        self.objects[key] = StoredObject(data, model, self.clock() + self.upload_ttl)
        self.uploads[key] = data
        self.upload_count += 1
        return self._upload_success(fields, key, data)

    @staticmethod
    async def _read_form(request: web.Request) -> tuple[dict[str, str], bytes]:
        """Form fields (names lower-cased, except those OSS spells with capitals) + the file."""
        reader = await request.multipart()
        fields: dict[str, str] = {}
        data: bytes | None = None
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise _FormError("InvalidArgument", "Nested multipart is not supported.")
            if data is not None:
                raise _FormError("InvalidArgument", "The file must be the last form field.")
            name = (part.name or "").lower()
            if name == "file":
                data = bytes(await part.read())
            else:
                fields[_FIELD_NAMES.get(name, name)] = await part.text()
        if data is None:
            raise _FormError("InvalidArgument", "The file field is missing.")
        return fields, data

    def _check_upload(self, fields: dict[str, str], data: bytes) -> web.Response | None:
        auth = [fields.get(name) for name in ("OSSAccessKeyId", "policy", "Signature")]
        if not all(auth):
            return xml_error(400, "InvalidArgument", "OSSAccessKeyId, policy and Signature "
                             "must all be present.")  # fmt: skip
        if "key" not in fields:
            return xml_error(400, "InvalidArgument", "The key field is missing.")
        if fields["OSSAccessKeyId"] != OSS_ACCESS_KEY_ID:
            return xml_error(403, "InvalidAccessKeyId")
        if not hmac.compare_digest(fields["Signature"], _sign(fields["policy"].encode())):
            return xml_error(403, "SignatureDoesNotMatch")
        try:
            document = json.loads(base64.b64decode(fields["policy"], validate=True))
            expires = datetime.strptime(document["expiration"], "%Y-%m-%dT%H:%M:%S.%fZ")
            conditions = list(document["conditions"])
        except (ValueError, KeyError, TypeError):
            return xml_error(400, "InvalidPolicyDocument")
        if self.clock() > expires.replace(tzinfo=UTC).timestamp():
            return xml_error(403, "PolicyExpired")
        for condition in conditions:
            problem = self._check_condition(condition, fields, len(data))
            if problem is not None:
                return problem
        existing = self.objects.get(fields["key"])
        overwrite_forbidden = fields.get("x-oss-forbid-overwrite", "").lower() == "true"
        if existing is not None and existing.expires_at > self.clock() and overwrite_forbidden:
            return xml_error(409, "FileAlreadyExists")
        return None

    @staticmethod
    def _check_condition(condition: Any, fields: dict[str, str], size: int) -> web.Response | None:
        failed = xml_error(
            403,
            "AccessDenied",
            f"Invalid according to Policy: Policy Condition failed: {json.dumps(condition)}",
        )
        if isinstance(condition, dict):
            for name, expected in condition.items():
                if name != "bucket" and fields.get(name.lower()) != expected:
                    return failed
            return None
        match condition:
            case ["content-length-range", int(low), int(high)]:
                if size > high:
                    return xml_error(400, "EntityTooLarge")
                if size < low:
                    return xml_error(400, "EntityTooSmall")
            case ["starts-with", str(name), str(prefix)]:
                if not fields.get(name.lstrip("$").lower(), "").startswith(prefix):
                    return failed
            case ["eq", str(name), str(value)]:
                if fields.get(name.lstrip("$").lower()) != value:
                    return failed
        return None

    @staticmethod
    def _upload_success(fields: dict[str, str], key: str, data: bytes) -> web.Response:
        etag = '"' + hashlib.md5(data).hexdigest().upper() + '"'
        headers = {"Server": "AliyunOSS", "x-oss-request-id": _oss_request_id(), "ETag": etag}
        status = fields.get("success_action_status", "")
        if status == "200":
            return web.Response(status=200, headers=headers)
        if status == "201":
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<PostResponse>\n'
                f"  <Bucket>{BUCKET}</Bucket>\n"
                f"  <Location>https://{BUCKET}.oss-cn-beijing.aliyuncs.com/{escape(key)}</Location>\n"
                f"  <Key>{escape(key)}</Key>\n  <ETag>{escape(etag)}</ETag>\n</PostResponse>\n"
            )
            return web.Response(
                status=201, text=body, content_type="application/xml", headers=headers
            )
        return web.Response(status=204, headers=headers)

    # -- submit ----------------------------------------------------------------------

    async def _submit(self, request: web.Request) -> web.Response:
        if (denied := self._check_auth(request)) is not None:
            return denied
        if request.headers.get("X-DashScope-Async", "").lower() != "enable":
            return json_error(403, "AccessDenied", SYNC_DENIED)
        if not self._submit_window.admit():
            self.throttled["submit"] += 1
            return json_error(429, "Throttling")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return json_error(400, "BadRequest.IllegalInput")
        problem = self._validate_submit(body)
        if problem is not None:
            return problem
        task = self._create_task(body, request)
        request[TASK_ID] = task.task_id
        return _json(
            200,
            {
                "output": {"task_status": "PENDING", "task_id": task.task_id},
                "request_id": task.request_id,
            },
        )

    def _validate_submit(self, body: Any) -> web.Response | None:
        if not isinstance(body, dict):
            return json_error(400, "BadRequest.IllegalInput")
        if not body.get("model"):
            return json_error(400, "BadRequest.EmptyModel")
        if body["model"] not in self.models:
            return json_error(400, "InvalidParameter", MODEL_NOT_EXIST)
        inputs = body.get("input")
        if not isinstance(inputs, dict) or not inputs:
            return json_error(400, "BadRequest.EmptyInput")
        urls = [
            inputs.get(k) for k in ("person_image_url", "top_garment_url", "bottom_garment_url")
        ]
        if not isinstance(urls[0], str) or not urls[0]:
            return json_error(400, "InvalidParameter")
        if any(url is not None and not isinstance(url, str) for url in urls[1:]):
            return json_error(400, "InvalidParameter")
        if not urls[1] and not urls[2]:
            return json_error(400, "InvalidGarment")
        parameters = body.get("parameters", {})
        if not isinstance(parameters, dict):
            return json_error(400, "InvalidParameter")
        if parameters.get("resolution", -1) not in (-1, *RESOLUTIONS):
            return json_error(400, "InvalidParameter")
        if not isinstance(parameters.get("restore_face", True), bool):
            return json_error(400, "InvalidParameter")
        return None

    def _create_task(self, body: dict[str, Any], request: web.Request) -> FakeTask:
        task = FakeTask(
            task_id=_uuid(),
            model=str(body["model"]),
            body=body,
            oss_resolve=request.headers.get("X-DashScope-OssResourceResolve", "").lower()
            == "enable",
            submit_time=self.clock(),
            request_id=_uuid(),
            held=self.hold,
            outcome=self._scripted.popleft() if self._scripted else None,
        )
        self.tasks[task.task_id] = task
        task.runner = asyncio.create_task(self._run(task), name=f"fake-task-{task.task_id}")
        return task

    # -- task life -------------------------------------------------------------------

    async def _run(self, task: FakeTask) -> None:
        """PENDING -> (slot) PRE-PROCESSING -> RUNNING -> POST-PROCESSING -> SUCCEEDED/FAILED."""
        try:
            await asyncio.sleep(self.pending_seconds)
            self._waiting.append(task)
            self._dispatch()
            await task.slot.wait()
            try:
                person, size = await self._check_inputs(task)
            except _Rejected as rejected:
                await asyncio.sleep(self.running_seconds * 0.2)
                self._finish(task, "FAILED", rejected.code, MESSAGES[rejected.code])
                return
            await asyncio.sleep(self.running_seconds * 0.2)
            self._set_status(task, "RUNNING")
            if task.held:
                await task.released.wait()
            else:
                await asyncio.sleep(self.running_seconds * 0.6)
            outcome = task.outcome or Outcome("SUCCEEDED")
            if outcome.status == "FAILED":
                self._finish(task, "FAILED", outcome.code or "InternalError", outcome.message)
                return
            self._set_status(task, "POST-PROCESSING")
            await asyncio.sleep(self.running_seconds * 0.2)
            image = await asyncio.to_thread(_render_result, task.task_id, person, size)
            self._store_result(task, image)
            self._finish(task, "SUCCEEDED")
        finally:
            self._release_slot(task)

    def _dispatch(self) -> None:
        """Starts waiting tasks, oldest first, while fewer than max_concurrent are running."""
        while self._waiting and len(self._running) < self.max_concurrent:
            task = self._waiting.popleft()
            self._running.add(task.task_id)
            task.scheduled_time = self.clock()
            self._set_status(task, "PRE-PROCESSING")
            task.slot.set()
        self.max_running_seen = max(self.max_running_seen, len(self._running))

    def _release_slot(self, task: FakeTask) -> None:
        with contextlib.suppress(ValueError):
            self._waiting.remove(task)
        self._running.discard(task.task_id)
        self._dispatch()
        self._notify()

    def _set_status(self, task: FakeTask, status: str) -> None:
        task.status = status
        self._notify()

    def _finish(
        self, task: FakeTask, status: str, code: str | None = None, message: str | None = None
    ) -> None:
        task.end_time = self.clock()
        task.code, task.message = code, message
        self._set_status(task, status)

    async def _check_inputs(self, task: FakeTask) -> tuple[bytes, tuple[int, int]]:
        """Fetches and checks every input; returns the person image and the output size."""
        urls = [
            task.inputs[name]
            for name in ("person_image_url", "top_garment_url", "bottom_garment_url")
            if task.inputs.get(name)
        ]
        blobs = [self._fetch_input(task, url) for url in urls]
        sizes = await asyncio.to_thread(_inspect_all, blobs)
        parameters = task.body.get("parameters") or {}
        size = RESOLUTIONS.get(parameters.get("resolution", -1), sizes[0])
        return blobs[0], size

    def _fetch_input(self, task: FakeTask, url: str) -> bytes:
        """Resolves oss:// keys (same model, header required) and the double's own http URLs."""
        if url.startswith("oss://"):
            stored = self.objects.get(url.removeprefix("oss://"))
            if (
                not task.oss_resolve
                or stored is None
                or stored.expires_at < self.clock()
                or stored.model != task.model
            ):
                raise _Rejected("InvalidURL")
            return stored.data
        prefix = self._origin + "/"
        if url.startswith(prefix + "files/"):
            data = self.files.get(unquote(url.removeprefix(prefix + "files/").split("?")[0]))
            if data is not None:
                return data
        if url.startswith(prefix + "results/"):
            task_id = url.removeprefix(prefix + "results/").split(".jpg")[0]
            result = self.results.get(task_id)
            if result is not None and result.expires_at >= self.clock():
                return result.data
        raise _Rejected("InvalidURL")

    def _store_result(self, task: FakeTask, image: bytes) -> None:
        expires = int(self.clock() + self.result_ttl)
        self.results[task.task_id] = StoredResult(image, float(expires))
        signature = _sign(self._result_string_to_sign(task.task_id, expires).encode())
        task.image_url = (
            f"{self._origin}/results/{task.task_id}.jpg?Expires={expires}"
            f"&OSSAccessKeyId={OSS_ACCESS_KEY_ID}&Signature={quote(signature, safe='')}"
        )

    @staticmethod
    def _result_string_to_sign(task_id: str, expires: int) -> str:
        return f"GET\n\n\n{expires}\n/{RESULT_BUCKET}/{task_id}.jpg"

    # -- query / cancel / list ---------------------------------------------------------

    def live_task(self, task_id: str) -> FakeTask | None:
        task = self.tasks.get(task_id)
        if task is not None and self.clock() - task.submit_time > self.task_ttl:
            self.forget(task_id)
            return None
        return task

    async def _query(self, request: web.Request) -> web.Response:
        if (denied := self._check_auth(request)) is not None:
            return denied
        if not self._query_window.admit():
            self.throttled["query"] += 1
            return json_error(429, "Throttling")
        task_id = request.match_info["task_id"]
        task = self.live_task(task_id)
        if task is None:
            output: dict[str, Any] = {"task_id": task_id, "task_status": "UNKNOWN"}
            return _json(200, {"request_id": _uuid(), "output": output})
        body: dict[str, Any] = {"request_id": _uuid(), "output": self._task_output(task)}
        if task.status == "SUCCEEDED":
            body["usage"] = {"image_count": 1}
        return _json(200, body)

    @staticmethod
    def _task_output(task: FakeTask) -> dict[str, Any]:
        output: dict[str, Any] = {
            "task_id": task.task_id,
            "task_status": task.status,
            "submit_time": _beijing(task.submit_time),
        }
        if task.scheduled_time is not None:
            output["scheduled_time"] = _beijing(task.scheduled_time)
        if task.end_time is not None:
            output["end_time"] = _beijing(task.end_time)
        if task.status == "SUCCEEDED":
            output["image_url"] = task.image_url
        if task.status == "FAILED":
            output["code"], output["message"] = task.code, task.message
        return output

    async def _cancel(self, request: web.Request) -> web.Response:
        if (denied := self._check_auth(request)) is not None:
            return denied
        task = self.live_task(request.match_info["task_id"])
        if task is None or task.status != "PENDING":
            return json_error(400, "UnsupportedOperation")
        self._finish(task, "CANCELED")
        if task.runner is not None:
            task.runner.cancel()
        return _json(200, {"request_id": _uuid()})

    async def _list(self, request: web.Request) -> web.Response:
        if (denied := self._check_auth(request)) is not None:
            return denied
        try:
            page_no = int(request.query.get("page_no", "1"))
            page_size = int(request.query.get("page_size", "10"))
            window = _time_window(request.query, self.clock())
        except ValueError:
            return json_error(400, "InvalidParameter")
        if page_no < 1 or not 1 <= page_size <= 100:
            return json_error(400, "InvalidParameter")
        status, model = request.query.get("status"), request.query.get("model_name")
        tasks = [
            task
            for task in sorted(self.tasks.values(), key=lambda t: t.submit_time, reverse=True)
            if (status is None or task.status == status)
            and (model is None or task.model == model)
            and window[0] <= task.submit_time <= window[1]
        ]
        page = tasks[(page_no - 1) * page_size : page_no * page_size]
        return _json(
            200,
            {
                "total": len(tasks),
                "data": [self._list_entry(task) for task in page],
                "total_page": -(-len(tasks) // page_size),
                "page_no": page_no,
                "request_id": _uuid(),
                "page_size": page_size,
            },
        )

    @staticmethod
    def _list_entry(task: FakeTask) -> dict[str, Any]:
        def millis(ts: float | None) -> int | None:
            return None if ts is None else int(ts * 1000)

        return {
            "api_key_id": "10001",
            "caller_parent_id": "1000000000000001",
            "caller_uid": "1000000000000001",
            "end_time": millis(task.end_time),
            "gmt_create": millis(task.submit_time),
            "model_name": task.model,
            "region": "cn-beijing",
            "request_id": task.request_id,
            "start_time": millis(task.scheduled_time),
            "status": task.status,
            "task_id": task.task_id,
            "user_api_unique_key": f"apikey:v1:aigc:image2image:image-synthesis:{task.model}",
        }

    # -- result and file hosts ---------------------------------------------------------

    async def _get_result(self, request: web.Request) -> web.Response:
        task_id = request.match_info["name"].removesuffix(".jpg")
        try:
            expires = int(request.query["Expires"])
            signature = request.query["Signature"]
        except (KeyError, ValueError):
            return xml_error(
                403, "AccessDenied", "Anonymous access is forbidden for this operation."
            )
        expected = _sign(self._result_string_to_sign(task_id, expires).encode())
        if request.query.get("OSSAccessKeyId") != OSS_ACCESS_KEY_ID:
            return xml_error(403, "InvalidAccessKeyId")
        if not hmac.compare_digest(signature, expected):
            return xml_error(403, "SignatureDoesNotMatch")
        result = self.results.get(task_id)
        now = self.clock()
        if now > expires or (result is not None and now > result.expires_at):
            return xml_error(403, "AccessDenied", "Request has expired.")
        if result is None:
            return xml_error(404, "NoSuchKey")
        return web.Response(
            body=result.data,
            content_type="image/jpeg",
            headers={"Server": "AliyunOSS", "x-oss-request-id": _oss_request_id()},
        )

    async def _get_file(self, request: web.Request) -> web.Response:
        data = self.files.get(request.match_info["name"])
        if data is None:
            return xml_error(404, "NoSuchKey")
        return web.Response(body=data, content_type="application/octet-stream")

    async def _stats(self, request: web.Request) -> web.Response:
        return _json(200, self.stats())


class _FormError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


# OSS field names are case-insensitive; these are kept in their documented spelling.
_FIELD_NAMES = {"ossaccesskeyid": "OSSAccessKeyId", "signature": "Signature"}


def _max_in_window(times: Iterable[float], window: float) -> int:
    ordered = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def _time_window(query: Any, now: float) -> tuple[float, float]:
    """``start_time``/``end_time`` as ``YYYYMMDDhhmmss`` Beijing time; default the last 24 h."""

    def parse(name: str, default: float) -> float:
        value = query.get(name)
        if not value:
            return default
        return datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=BEIJING).timestamp()

    return parse("start_time", now - 24 * 3600), parse("end_time", now + 1)


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeDashScope(
        api_key=args.api_key,
        pending_seconds=args.pending_seconds,
        running_seconds=args.running_seconds,
        max_concurrent=args.max_concurrent,
        submit_rps=args.submit_rps,
        query_qps=args.query_qps,
    )
    await fake.start(args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(fake.base_url, flush=True)
    try:
        await stop.wait()
    finally:
        await fake.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local DashScope aitryon + OSS test double.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="sk-test-key")
    parser.add_argument("--pending-seconds", type=float, default=0.05)
    parser.add_argument("--running-seconds", type=float, default=0.2)
    parser.add_argument("--max-concurrent", type=int, default=5)
    parser.add_argument("--submit-rps", type=int, default=10)
    parser.add_argument("--query-qps", type=int, default=20)
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
