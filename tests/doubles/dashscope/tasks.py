"""Async tasks: submit, the task's life, query, cancel and list (dashscope-api.md §4, §5, §7).

* Submit (``POST …/image2image/image-synthesis``, trailing ``/`` accepted) requires
  ``X-DashScope-Async: enable`` (else 403 AccessDenied), allows 10 submits/s (429 Throttling),
  validates the body (400 InvalidParameter, InvalidGarment, BadRequest.*) and answers
  ``{"output":{"task_status":"PENDING","task_id":…},"request_id":…}``.
* try-on (``aitryon-plus``, ``aitryon``) and the refiner (``aitryon-refiner``: required
  ``top_garment_url``, ``person_image_url``, ``coarse_image_url`` and ``parameters.gender``
  woman/man) share the account's 5 tasks out of PENDING; the rest wait as PENDING.
* A task walks PENDING → PRE-PROCESSING → RUNNING → POST-PROCESSING → SUCCEEDED/FAILED; input
  problems (download, size, the refiner's coarse image) end it FAILED with HTTP 200 on query.
* Query: 20 QPS, UNKNOWN (HTTP 200) for missing or expired ids; cancel only while PENDING
  (else 400 UnsupportedOperation); list: paginated, epoch-ms times, a ≤ 24 h window of
  ``YYYYMMDDhhmmss`` Beijing times (default the last 24 h), filters ``model_name``, ``status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, Literal

from aiohttp import web

from tests.doubles.dashscope.core import TASK_ID
from tests.doubles.dashscope.images import image_size, inspect_all, render_refined, render_result
from tests.doubles.dashscope.records import FakeTask, Outcome, time_window
from tests.doubles.dashscope.results import Results
from tests.doubles.dashscope.wire import (
    MESSAGES,
    MODEL_NOT_EXIST,
    PARSING_MODEL,
    REFINER_MODEL,
    RESOLUTIONS,
    SIZE_MISMATCH,
    SYNC_DENIED,
    URL_ERROR,
    Rejected,
    beijing_time,
    json_error,
    json_response,
    new_id,
)

GENDERS = frozenset({"woman", "man"})
MAX_LIST_WINDOW = 24 * 3600


class Tasks(Results):
    """The task endpoints and the simulated task life."""

    # -- scripting -----------------------------------------------------------------------

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

    def _release(self, task_id: str, outcome: Outcome) -> None:
        task = self.tasks[task_id]
        task.outcome = outcome
        task.released.set()

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
        return json_response(
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
        if body["model"] == PARSING_MODEL:  # the parsing model has its own sync endpoint
            return json_error(400, "InvalidParameter", URL_ERROR)
        inputs = body.get("input")
        if not isinstance(inputs, dict) or not inputs:
            return json_error(400, "BadRequest.EmptyInput")
        if body["model"] == REFINER_MODEL:
            return self._validate_refiner(inputs, body.get("parameters"))
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

    @staticmethod
    def _validate_refiner(inputs: dict[str, Any], parameters: Any) -> web.Response | None:
        """aitryon-refiner: top garment, person and coarse image URLs and gender required."""
        required = ("top_garment_url", "person_image_url", "coarse_image_url")
        if any(not isinstance(inputs.get(name), str) or not inputs[name] for name in required):
            return json_error(400, "InvalidParameter")
        bottom = inputs.get("bottom_garment_url")
        if bottom is not None and not isinstance(bottom, str):
            return json_error(400, "InvalidParameter")
        if not isinstance(parameters, dict):
            return json_error(
                400, "BadRequest.EmptyParameters", MESSAGES["BadRequest.EmptyParameters"]
            )
        if parameters.get("gender") not in GENDERS:
            return json_error(400, "InvalidParameter")
        return None

    def _create_task(self, body: dict[str, Any], request: web.Request) -> FakeTask:
        task = FakeTask(
            task_id=new_id(),
            model=str(body["model"]),
            body=body,
            oss_resolve=request.headers.get("X-DashScope-OssResourceResolve", "").lower()
            == "enable",
            submit_time=self.clock(),
            request_id=new_id(),
            held=self.hold,
            outcome=self._scripted.popleft() if self._scripted else None,
        )
        self.tasks[task.task_id] = task
        self.tasks_created[task.model] += 1
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
                source, size = await self._check_inputs(task)
            except Rejected as rejected:
                await asyncio.sleep(self.running_seconds * 0.2)
                self._finish(task, "FAILED", rejected.code, rejected.message)
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
            if task.model == REFINER_MODEL:
                image = await asyncio.to_thread(render_refined, task.task_id, source)
            else:
                image = await asyncio.to_thread(render_result, task.task_id, source, size)
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
        """Fetches and checks every input; returns the image the result is made from (the
        person, or the refiner's coarse image) and the output size."""
        if task.model == REFINER_MODEL:
            return await self._check_refiner_inputs(task)
        urls = [
            task.inputs[name]
            for name in ("person_image_url", "top_garment_url", "bottom_garment_url")
            if task.inputs.get(name)
        ]
        blobs = [self._fetch_input(task, url) for url in urls]
        sizes = await asyncio.to_thread(inspect_all, blobs)
        parameters = task.body.get("parameters") or {}
        size = RESOLUTIONS.get(parameters.get("resolution", -1), sizes[0])
        return blobs[0], size

    async def _check_refiner_inputs(self, task: FakeTask) -> tuple[bytes, tuple[int, int]]:
        """The refiner's person and garments must be uploaded for the refiner; its coarse
        image must be a live try-on result the size of the person image (§7)."""
        urls = [
            task.inputs[name]
            for name in ("person_image_url", "top_garment_url", "bottom_garment_url")
            if task.inputs.get(name)
        ]
        blobs = [self._fetch_input(task, url) for url in urls]
        sizes = await asyncio.to_thread(inspect_all, blobs)
        coarse_url = task.inputs["coarse_image_url"]
        if not coarse_url.startswith(self.origin + "/results/"):
            raise Rejected("InvalidURL")
        coarse = self._fetch_input(task, coarse_url)
        if await asyncio.to_thread(image_size, coarse) != sizes[0]:
            raise Rejected("InvalidParameter", SIZE_MISMATCH)
        return coarse, sizes[0]

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
            return json_response(200, {"request_id": new_id(), "output": output})
        body: dict[str, Any] = {"request_id": new_id(), "output": self._task_output(task)}
        if task.status == "SUCCEEDED":
            body["usage"] = {"image_count": 1}
        return json_response(200, body)

    @staticmethod
    def _task_output(task: FakeTask) -> dict[str, Any]:
        output: dict[str, Any] = {
            "task_id": task.task_id,
            "task_status": task.status,
            "submit_time": beijing_time(task.submit_time),
        }
        if task.scheduled_time is not None:
            output["scheduled_time"] = beijing_time(task.scheduled_time)
        if task.end_time is not None:
            output["end_time"] = beijing_time(task.end_time)
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
        return json_response(200, {"request_id": new_id()})

    async def _list(self, request: web.Request) -> web.Response:
        if (denied := self._check_auth(request)) is not None:
            return denied
        try:
            page_no = int(request.query.get("page_no", "1"))
            page_size = int(request.query.get("page_size", "10"))
            window = time_window(request.query, self.clock())
        except ValueError:
            return json_error(400, "InvalidParameter")
        if page_no < 1 or not 1 <= page_size <= 100:
            return json_error(400, "InvalidParameter")
        if not 0 <= window[1] - window[0] <= MAX_LIST_WINDOW + 1:
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
        return json_response(
            200,
            {
                "total": len(tasks),
                "data": [self._list_entry(task) for task in page],
                "total_page": -(-len(tasks) // page_size),
                "page_no": page_no,
                "request_id": new_id(),
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
