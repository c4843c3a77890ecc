"""The collector as a background task of ``registry serve``: one run every interval.

Every worker process runs this loop; the storage lease lets one of them (or one
replica, or a ``registry gc`` started by hand) collect at a time, and the others skip
that round.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from registry.config import Config
from registry.gc.collector import CollectionBusyError, Collector
from registry.gc.report import CollectionReport
from registry.maintenance import ReadOnlyState
from registry.policy import usage_groups
from registry.proxy import cached_namespaces
from registry.store import LeaseLostError, RegistryStore
from registry.tasks import stop_task

log = logging.getLogger("registry.gc")

STOP_TIMEOUT = 10.0


class BackgroundCollector:
    def __init__(
        self,
        collector: Collector,
        interval: float,
        *,
        paused: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.collector = collector
        self.interval = interval
        # Asked before each run; True skips it (read-only maintenance, for one).
        self.paused = paused
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="registry-gc")

    async def stop(self) -> None:
        """Cancel the loop; a run in progress removes its tombstones and lease first."""
        task, self._task = self._task, None
        if not await stop_task(task, STOP_TIMEOUT):
            log.warning("gc: the collection did not stop within %.0fs", STOP_TIMEOUT)

    async def _loop(self) -> None:
        while True:
            # A little jitter keeps the workers of one server from asking for the
            # lease at the same moment every time.
            await self.collector.store.clock.sleep(self.interval * random.uniform(0.9, 1.1))
            await self.run_once()

    async def run_once(self) -> CollectionReport | None:
        """One collection, unless paused or another process holds the lease; its summary
        is logged, and so are failures: the next interval tries again."""
        try:
            if self.paused is not None and await self.paused():
                log.info("gc: skipped, the registry is read-only")
                return None
            report = await self.collector.run()
            log.info(report.summary())
            return report
        except CollectionBusyError:
            log.debug("gc: skipped, another process is collecting")
        except LeaseLostError as exc:
            log.error("gc: stopped: %s", exc)
        except Exception:
            log.exception("gc: the collection failed")
        return None


def background_collector(
    store: RegistryStore,
    config: Config,
    readonly: ReadOnlyState,
) -> BackgroundCollector | None:
    """The loop ``registry serve`` runs, or None when ``gc.enabled`` is off or the
    registry is read-only by configuration. Runs are skipped while the read-only
    maintenance flag is set; ``registry gc`` by hand still works then. The usage
    snapshot counts per quota group (``policy.quotas``)."""
    if not config.gc.enabled or config.storage.readonly:
        return None

    async def paused() -> bool:
        return await readonly.flag() is not None

    return BackgroundCollector(collector_for(store, config), config.gc.interval, paused=paused)


def collector_for(store: RegistryStore, config: Config) -> Collector:
    """The collector as the configuration sets it up, for ``registry serve``'s loop and
    ``registry gc`` alike: quota groups counted, cached namespaces left to eviction."""
    return Collector(
        store,
        config.gc,
        upload_expiry=config.uploads.expiry,
        usage_groups=usage_groups(config.policy),
        cached=cached_namespaces(config.proxy),
    )
