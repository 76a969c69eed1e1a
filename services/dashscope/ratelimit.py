"""Rate limiting shared by the DashScope client's requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress


class SlidingWindowLimiter:
    """At most ``rate`` requests in any window of ``period`` seconds, as the server counts.

    A token bucket may let through twice its rate across a window boundary, so this keeps
    the times of the last ``rate`` requests instead. A request's time is the moment its
    response came back (until then it counts as "now"): a request has always reached the
    server by then, so however the network delays requests, the server never sees more
    than ``rate`` of them in one window.
    """

    def __init__(
        self,
        rate: int,
        period: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate < 1:
            raise ValueError("rate must be at least 1")
        self.rate = rate
        self.period = period
        self._clock = clock
        self._finished: list[float] = []  # response times of recent requests
        self._in_flight = 0
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Waits for room, then holds a place in the window until the request is answered."""
        await self._admit()
        try:
            yield
        finally:
            self._in_flight -= 1
            self._finished.append(self._clock())
            self._changed.set()

    async def _admit(self) -> None:
        async with self._lock:  # FIFO: waiters are served in arrival order
            while True:
                now = self._clock()
                self._finished = [t for t in self._finished if now - t < self.period]
                if len(self._finished) + self._in_flight < self.rate:
                    self._in_flight += 1
                    return
                self._changed.clear()
                if self._finished:
                    wait = self.period - (now - min(self._finished)) + 0.001
                    with suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), wait)
                else:  # the window is full of requests still in flight
                    await self._changed.wait()
