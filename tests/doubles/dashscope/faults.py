"""Faults the DashScope double can play on any endpoint (dashscope-api.md §6 error table):

* the next N requests answer an HTTP error (JSON or, on OSS hosts, XML; 502/504 with the
  gateway's plain-text body), optionally after the request took effect ("the task was
  created, then the gateway answered 502": a client must reconcile, not resubmit);
* the connection is reset, before or after the request took effect;
* the answer is held past the client's timeout;
* an outage: every request fails for N seconds (503 ``ModelUnavailable``, 429
  ``Throttling.AllocationQuota``, ...).

Faults are applied by the middleware, after each arrival was counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

from aiohttp import web
from aiohttp.typedefs import Handler

from tests.doubles.dashscope.core import TASK_ID, DashScopeCore
from tests.doubles.dashscope.records import Fault, Outage
from tests.doubles.dashscope.wire import (
    DEFAULT_JSON_ERROR,
    DEFAULT_XML_ERROR,
    ENDPOINTS,
    GATEWAY_BODY,
    XML_ENDPOINTS,
    Dropped,
    Endpoint,
    json_error,
    xml_error,
)


class Faults(DashScopeCore):
    """Fault scripting and the middleware that applies it."""

    def fail_next(
        self,
        endpoint: Endpoint,
        status: int,
        code: str | None = None,
        message: str | None = None,
        count: int = 1,
        *,
        retry_after: float | None = None,
        after_processing: bool = False,
    ) -> None:
        """The next ``count`` requests to ``endpoint`` get this HTTP error, unprocessed (with
        `after_processing`, the request takes effect first: a submit creates its task)."""
        fault = Fault(
            "fail", status, code, message, retry_after=retry_after,
            after_processing=after_processing,
        )  # fmt: skip
        self._add_fault(endpoint, fault, count)

    def drop_next(self, endpoint: Endpoint, count: int = 1, *, process: bool = True) -> None:
        """Close the connection without answering; with ``process`` the request takes effect
        first (a submit creates its task), as when a reply is lost on the way back."""
        self._add_fault(endpoint, Fault("drop", process=process), count)

    def delay_next(self, endpoint: Endpoint, seconds: float, count: int = 1) -> None:
        """Process the request, then hold the reply ``seconds`` (to trip client timeouts)."""
        self._add_fault(endpoint, Fault("delay", seconds=seconds), count)

    def _add_fault(self, endpoint: str, fault: Fault, count: int) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {ENDPOINTS}")
        self._faults.setdefault(endpoint, deque()).extend([fault] * count)

    def submit_then_fail(self, status: int = 502, count: int = 1) -> None:
        """The next submits create their task, then answer `status` (502/504: the gateway's
        plain-text body) instead of the task id; `drop_next("submit")` resets instead."""
        self.fail_next("submit", status, count=count, after_processing=True)

    def fail_for(
        self,
        endpoint: Endpoint,
        seconds: float,
        status: int = 503,
        code: str = "ModelUnavailable",
        message: str | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        """Every request to `endpoint` answers this error for the next `seconds` (real time),
        e.g. ``fail_for("submit", 2, 429, "Throttling.AllocationQuota")``."""
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {ENDPOINTS}")
        until = time.monotonic() + seconds
        self._outages.append(Outage(endpoint, until, status, code, message, retry_after))

    def _take_fault(self, endpoint: str) -> Fault | None:
        now = time.monotonic()
        self._outages = [o for o in self._outages if o.until > now]
        for outage in self._outages:
            if outage.endpoint == endpoint:
                return Fault("fail", outage.status, outage.code, outage.message, outage.retry_after)
        queue = self._faults.get(endpoint)
        return queue.popleft() if queue else None

    # -- middleware: observation and fault injection ----------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        endpoint = (request.match_info.route.name or "other").split(".")[0]
        self.requests[endpoint] += 1
        record = await self._observe(endpoint, request)
        fault = self._take_fault(endpoint)
        try:
            response = await self._respond(endpoint, request, handler, fault)
        except Dropped:
            raise asyncio.CancelledError from None  # aiohttp then closes without replying
        finally:
            if record is not None:
                record["task_id"] = request.get(TASK_ID)  # also when the reply is dropped
            self._notify()
        if record is not None:
            record["status"] = response.status
        return response

    async def _respond(
        self, endpoint: str, request: web.Request, handler: Handler, fault: Fault | None
    ) -> web.StreamResponse:
        if fault is None:
            return await handler(request)
        if fault.action == "fail":
            if fault.after_processing:
                await handler(request)
            else:
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
        raise Dropped

    def _fault_response(self, endpoint: str, fault: Fault) -> web.Response:
        headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
        if endpoint in XML_ENDPOINTS:
            code = fault.code or DEFAULT_XML_ERROR.get(fault.status, "InternalError")
            return xml_error(fault.status, code, fault.message, headers)
        if fault.code is None and fault.status in (502, 504):
            return web.Response(status=fault.status, text=GATEWAY_BODY, headers=headers)
        code = fault.code or DEFAULT_JSON_ERROR.get(fault.status, "InternalError")
        if endpoint == "policy" and code == "Throttling":
            code = "Throttling.RateQuota"
        return json_error(fault.status, code, fault.message, headers)
