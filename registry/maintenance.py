"""Read-only mode: pulls keep working, pushes and deletes are refused with an OCI error.

Two switches. ``storage.readonly: true`` in the configuration makes a registry read-only
for good (a mirror, a replica): writes get 405 UNSUPPORTED. For a maintenance window an
operator runs ``registry readonly on`` / ``off``, which writes or removes a flag object
in the storage backend; writes then get 503 UNAVAILABLE with Retry-After.

Why an object in storage and not a signal or an admin endpoint: with ``--workers N`` and
with replicas behind a load balancer the registry is many processes, and a signal or a
request reaches exactly one of them. The storage is the one thing they all share, so a
flag kept there is seen by every worker and every replica, survives restarts, and needs
no credentials beyond the ones that can already write the storage. Each process re-reads
it at most once per ``storage.readonly_flag_ttl`` and only when a write asks, so pulls
never pay for the check.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from starlette.requests import Request

from registry import errors
from registry.errors import RegistryError
from registry.store import MaintenanceFlag, ReadOnlyFlag

log = logging.getLogger("registry.maintenance")

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RETRY_AFTER = "60"


class ReadOnlyState:
    """Whether this process refuses writes now: the config, or the flag read lately."""

    def __init__(
        self,
        stored: ReadOnlyFlag,
        forced: bool,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stored = stored
        self.forced = forced
        self.ttl = ttl
        self._clock = clock
        self._flag: MaintenanceFlag | None = None
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    async def flag(self) -> MaintenanceFlag | None:
        """The maintenance flag, re-read from storage when the last read is older than
        the TTL. Concurrent callers share one read."""
        if self._fresh():
            return self._flag
        async with self._lock:
            if not self._fresh():
                try:
                    self._flag = await self.stored.read()
                except Exception as exc:
                    # Keep the last known state: a storage outage fails the writes on
                    # its own, and must not flip the mode either way.
                    log.warning("cannot read the maintenance flag: %s", exc)
                self._read_at = self._clock()
        return self._flag

    def _fresh(self) -> bool:
        return self._read_at is not None and self._clock() - self._read_at < self.ttl

    async def refusal(self) -> RegistryError | None:
        """The error a write gets now, or None when writes are allowed."""
        if self.forced:
            return RegistryError(
                errors.UNSUPPORTED,
                "this registry is read-only: pushes and deletes are disabled, pulls work",
            )
        flag = await self.flag()
        if flag is None:
            return None
        message = "the registry is in read-only maintenance mode: pulls work, retry pushes later"
        if flag.reason:
            message += f" ({flag.reason})"
        return RegistryError(
            errors.UNAVAILABLE,
            message,
            detail={"readonly": True, "since": flag.since},
            headers={"Retry-After": RETRY_AFTER},
        )

    async def mode(self, refresh: bool = True) -> str:
        """``read-write``, ``read-only`` (configuration) or ``maintenance`` (flag); from
        the last read of the flag when ``refresh`` is false (the backend is down)."""
        if self.forced:
            return "read-only"
        flag = await self.flag() if refresh else self._flag
        return "maintenance" if flag is not None else "read-write"


async def refuse_writes_when_readonly(request: Request) -> None:
    """App-wide dependency: a push or delete under /v2/ raises the refusal, if any.

    A dependency rather than a middleware so that it runs after routing: the refused
    request is logged and counted under its route template like any other."""
    # The scope's path: building ``request.url`` costs more than this whole check.
    if request.method not in WRITE_METHODS or not request.scope["path"].startswith("/v2/"):
        return
    state: ReadOnlyState = request.app.state.readonly
    refusal = await state.refusal()
    if refusal is not None:
        raise refusal
