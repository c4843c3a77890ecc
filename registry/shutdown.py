"""Graceful shutdown: in-flight requests get to finish their cleanup before the driver closes.

On SIGTERM uvicorn stops accepting, waits ``http.graceful_timeout`` for in-flight requests,
then cancels the rest and goes straight on to the lifespan shutdown, without waiting for
the cancelled requests to unwind; ``asyncio.run`` then cancels them a second time. An
upload's unwinding is what writes the bytes it received and its session state, so that
the client can resume on the restarted server: cut short, it loses the tail of the data
or the state. The lifespan therefore waits here for the cancelled requests (a few ms:
what they still hold is in memory) before it closes the driver.
"""

from __future__ import annotations

import asyncio
import logging

from registry.request_log import ASGIApp, Receive, Scope, Send

log = logging.getLogger("registry.shutdown")

# How long requests cut off by the graceful timeout get to save what they hold.
CLEANUP_GRACE = 10.0


class InflightRequests:
    """The tasks serving HTTP requests now, filled by ``TrackRequests``."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[object]] = set()

    async def drain(self, grace: float = CLEANUP_GRACE) -> None:
        current = asyncio.current_task()
        pending = {t for t in self.tasks if not t.done() and t is not current}
        if not pending:
            return
        _, still = await asyncio.wait(pending, timeout=grace)
        if still:
            log.error("%d request(s) did not finish their cleanup in %.0fs", len(still), grace)


class TrackRequests:
    def __init__(self, app: ASGIApp, inflight: InflightRequests) -> None:
        self.app = app
        self.inflight = inflight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task() if scope["type"] == "http" else None
        if task is None:
            await self.app(scope, receive, send)
            return
        self.inflight.tasks.add(task)
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight.tasks.discard(task)
