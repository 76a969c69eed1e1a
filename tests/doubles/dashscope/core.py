"""State, observation and the request middleware of the DashScope double (base of
`FakeDashScope`).

`FakeDashScope` is a chain of layers, one module per concern: core (state, counters, the
middleware that observes every request and applies faults) → faults → storage (getPolicy +
OSS) → results (result and file hosts, input fetching) → tasks (submit/query/cancel/list) →
parsing → server (routes). Tests only use the final class.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.doubles.dashscope.records import (
    FakeTask,
    Fault,
    Outage,
    Outcome,
    StoredObject,
    StoredResult,
    Window,
    max_in_window,
)
from tests.doubles.dashscope.wire import API_PREFIX, TRYON_MODELS, json_error
from tests.doubles.server import LocalServer

TASK_ID = web.RequestKey("task_id", str)  # set by the submit handler for the middleware
PARSING_RPS = 10


class DashScopeCore(LocalServer):
    """DashScope + OSS temp storage + result host: state and what tests observe."""

    shutdown_timeout = 0.5

    def __init__(
        self,
        *,
        api_key: str = "sk-test-key",
        models: tuple[str, ...] = TRYON_MODELS,
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
        super().__init__()
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
        self._faults: dict[str, deque[Fault]] = {}
        self._submit_window = Window(submit_rps)
        self._query_window = Window(query_qps)
        self._policy_windows: dict[str, Window] = {}
        self._waiting: deque[FakeTask] = deque()
        self._running: set[str] = set()
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self.parsing_calls: list[dict[str, Any]] = []  # like `submits`, for the parsing model
        self.tasks_created: Counter[str] = Counter()  # per model, forgotten tasks included
        self._parsing_window = Window(PARSING_RPS)
        self._outages: list[Outage] = []
        self.person_garments: dict[str, frozenset[str]] = {}  # image sha256 -> garments
        self.default_garments: frozenset[str] = frozenset({"upper", "lower"})
        self.undownloadable: set[str] = set()  # file names whose fetch fails (results.py)
        self._undownloadable_codes: dict[str, str] = {}

    @property
    def base_url(self) -> str:
        """The DASHSCOPE_HTTP_BASE_URL to give the client."""
        return self.origin + API_PREFIX

    @property
    def upload_host(self) -> str:
        return self.origin + "/oss"

    async def before_close(self) -> None:
        self._closing.set()
        runners = [t.runner for t in self.tasks.values() if t.runner and not t.runner.done()]
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)

    def enable_models(self, *models: str) -> None:
        """Adds models to the account (e.g. `REFINER_MODEL`, `PARSING_MODEL`)."""
        self.models = (*self.models, *(m for m in models if m not in self.models))

    # -- observation -------------------------------------------------------------------

    def submits_per_model(self) -> Counter[str]:
        """Task submits per ``model`` in the body, every answer included."""
        return Counter(
            str(record["body"].get("model"))
            for record in self.submits
            if isinstance(record["body"], dict)
        )

    @property
    def list_calls(self) -> int:
        """``GET /tasks`` (list) requests, every answer included."""
        return self.requests["list"]

    def max_queries_in_window(self, window: float = 1.0) -> int:
        return max_in_window(self.query_times, window)

    def max_submits_in_window(self, window: float = 1.0) -> int:
        return max_in_window([record["time"] for record in self.submits], window)

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
            "submits_per_model": dict(self.submits_per_model()),
            "tasks_created": dict(self.tasks_created),
            "parsing_calls": len(self.parsing_calls),
            "list_calls": self.list_calls,
            "policy_calls": self.policy_calls,
            "upload_count": self.upload_count,
            "cancels": len(self.cancels),
            "max_running_seen": self.max_running_seen,
            "max_queries_in_window": self.max_queries_in_window(),
            "max_submits_in_window": self.max_submits_in_window(),
            "statuses": dict(Counter(task.status for task in self.tasks.values())),
        }

    # -- observation of every request ---------------------------------------------

    async def _observe(self, endpoint: str, request: web.Request) -> dict[str, Any] | None:
        now = time.monotonic()
        if endpoint == "query":
            self.query_times.append(now)
        elif endpoint == "policy":
            self.policy_calls += 1
        elif endpoint == "cancel":
            self.cancels.append(request.match_info["task_id"])
        elif endpoint in ("submit", "parsing"):
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
            (self.submits if endpoint == "submit" else self.parsing_calls).append(record)
            return record
        return None

    def _check_auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if not header:
            return json_error(401, "InvalidApiKey", "No API-key provided.")
        if header != f"Bearer {self.api_key}":
            return json_error(401, "InvalidApiKey")
        return None
