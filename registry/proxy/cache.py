"""``PullThroughCache``: the parts of the cache of one process, wired together, started
and stopped with the application."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from registry.config import Config
from registry.proxy.blobs import BlobCache
from registry.proxy.eviction import BackgroundEvictor, Evictor
from registry.proxy.fills import Fills
from registry.proxy.manifests import ManifestCache
from registry.proxy.pulls import PullRecorder
from registry.proxy.referrers import ReferrersCache
from registry.proxy.routing import Routes
from registry.proxy.upstreams import UpstreamClients
from registry.store import RegistryStore


class PullThroughCache:
    def __init__(
        self,
        config: Config,
        store: RegistryStore,
        *,
        paused: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        proxy = config.proxy
        self.store = store
        self.routes = Routes.from_config(proxy)
        self.clients = UpstreamClients()
        self.pulls = PullRecorder(store, proxy.pulled_resolution)
        self.fills = Fills(store, self.clients, proxy.spool_dir)
        self.manifests = ManifestCache(store, self.clients, self.pulls)
        self.blobs = BlobCache(store, self.clients, self.fills)
        self.referrers = ReferrersCache(store, self.clients)
        self.evictor = Evictor(store, proxy, self.routes, self.pulls)
        self._eviction = BackgroundEvictor(self.evictor, proxy.eviction_interval, paused)

    def start(self) -> None:
        self.pulls.start()
        self._eviction.start()

    async def stop(self) -> None:
        await self._eviction.stop()
        await self.fills.stop()
        await self.pulls.stop()
        await self.clients.aclose()


def open_cache(
    config: Config,
    store: RegistryStore,
    paused: Callable[[], Awaitable[bool]] | None = None,
) -> PullThroughCache | None:
    """The cache of ``config.proxy``, or None when no upstream is configured."""
    if not config.proxy.upstreams:
        return None
    return PullThroughCache(config, store, paused=paused)
