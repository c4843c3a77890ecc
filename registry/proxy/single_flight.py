"""Concurrent callers of one key share one call: N clients asking for one uncached tag
make one upstream request. A caller that goes away does not cancel it for the others."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._calls: dict[Hashable, asyncio.Future[T]] = {}

    async def run(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        future = self._calls.get(key)
        if future is None:
            future = asyncio.ensure_future(call())
            self._calls[key] = future

            def done(f: asyncio.Future[T]) -> None:
                if self._calls.get(key) is f:
                    del self._calls[key]
                if not f.cancelled():
                    f.exception()  # retrieved: the waiters may all be gone

            future.add_done_callback(done)
        return await asyncio.shield(future)
