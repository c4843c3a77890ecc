"""Stopping the background loops (collector, event delivery, replication, cache pulls
and eviction, quota compaction): one way for all of them."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("registry")


async def stop_task(task: asyncio.Task[Any] | None, within: float | None = None) -> bool:
    """Cancel ``task`` and wait for it to end, at most ``within`` seconds (None: as
    long as it takes). Returns whether it ended. A loop that had died of an error says
    so in the log: at shutdown there is nobody else to tell."""
    if task is None:
        return True
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=within)
    if not done:
        return False
    if not task.cancelled() and task.exception() is not None:
        log.warning("%s had stopped: %r", task.get_name(), task.exception())
    return True
