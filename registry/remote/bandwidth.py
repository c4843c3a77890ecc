"""A token bucket that caps the bytes per second of one client (replication's cap)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """``rate`` bytes per second on average, bursts of up to ``burst`` bytes.

    Takers may ask for more than is there: the bucket goes into debt and the taker sleeps
    until it is paid back, so that concurrent streams share the rate in arrival order
    without a lock (the accounting has no await)."""

    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()

    def _debt_after(self, n: int) -> float:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= n
        return -self._tokens if self._tokens < 0 else 0.0

    async def take(self, n: int) -> None:
        debt = self._debt_after(n)
        if debt > 0:
            await asyncio.sleep(debt / self.rate)
