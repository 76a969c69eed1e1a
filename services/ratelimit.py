"""Rate limiting primitives shared by the DashScope client and the scheduler."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable


class SlidingWindowLimiter:
    """Allows at most ``rate`` acquisitions in any window of ``period`` seconds.

    A token bucket may let through twice its rate across a window boundary; this
    keeps the timestamps of the last ``rate`` grants, so the guarantee holds for
    every window, which is what DashScope's per-second limits count.
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
        self._grants: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:  # FIFO: waiters are served in arrival order
            while True:
                now = self._clock()
                while self._grants and now - self._grants[0] >= self.period:
                    self._grants.popleft()
                if len(self._grants) < self.rate:
                    self._grants.append(now)
                    return
                await asyncio.sleep(self.period - (now - self._grants[0]) + 0.001)
