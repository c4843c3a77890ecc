"""Eviction: cached manifests not pulled for ``proxy.evict_after`` go, and the least
recently pulled go while the cache holds more than ``proxy.max_size``.

Eviction deletes manifests (with their tags) from the cached repositories, and nothing
else: the garbage collector's next run removes the links and blobs that no kept manifest
uses any more, so a blob that a local image or another cached image shares stays, and
its grace period covers a pull that races the eviction. The eviction itself keeps
images whole: a manifest counts as pulled when any index that lists it or any manifest
it refers to (its subject) was, so an index goes no later than its children and a
subject no later than its signatures, and parents are deleted first.

What the cache holds is counted from what cached manifests reference and their
repositories have linked (fetched), each blob once, plus the manifests. One process at
a time evicts (the storage lease ``proxy-evict``); last-pulled times come from
``pulls.py`` (at most ``pulled_resolution`` old) and, for a manifest never marked, from
when it was cached. Times are the storage's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from registry.config import ProxyConfig
from registry.context import RequestContext, acting_as
from registry.errors import RegistryError
from registry.manifest import parse_manifest
from registry.proxy import metrics
from registry.proxy.pulls import PullRecorder
from registry.proxy.routing import Routes
from registry.reference import Digest
from registry.store import Lease, LeaseLostError, PathNotFoundError, RegistryStore, Revision
from registry.tasks import stop_task

log = logging.getLogger("registry.proxy")

LEASE = "proxy-evict"
CATALOG_PAGE = 1000

Node = tuple[str, Digest]  # (repository, manifest)
Reason = Literal["age", "size"]


@dataclass
class Cached:
    """One cached manifest as eviction sees it."""

    pulled: float  # storage time of its last pull (or of its caching)
    size: int  # the manifest's own bytes
    blobs: dict[Digest, int] = field(default_factory=dict)  # fetched blobs it references
    children: frozenset[Digest] = frozenset()  # index children
    subject: Digest | None = None


@dataclass
class EvictionReport:
    evicted: list[tuple[Node, Reason]] = field(default_factory=list)
    bytes_before: int = 0
    bytes_after: int = 0

    def summary(self) -> str:
        ages = sum(1 for _, r in self.evicted if r == "age")
        return (
            f"proxy eviction: {len(self.evicted)} manifests evicted ({ages} by age, "
            f"{len(self.evicted) - ages} by size); the cache counted {self.bytes_before} "
            f"bytes, {self.bytes_after} after"
        )


def cache_bytes(nodes: Mapping[Node, Cached]) -> int:
    blobs: dict[Digest, int] = {}
    for entry in nodes.values():
        blobs.update(entry.blobs)
    return sum(blobs.values()) + sum(e.size for e in nodes.values())


def effective_times(nodes: Mapping[Node, Cached]) -> tuple[dict[Node, float], dict[Node, int]]:
    """Per manifest: the latest pull of it or of anything that keeps it (an index that
    lists it, its subject), and its depth below them (parents first)."""
    keeps: dict[Node, list[Node]] = {}  # node -> the nodes it keeps
    for (repo, digest), entry in nodes.items():
        kept = [(repo, c) for c in entry.children]
        keeps.setdefault((repo, digest), []).extend(k for k in kept if k in nodes)
        if entry.subject is not None and (repo, entry.subject) in nodes:
            keeps.setdefault((repo, entry.subject), []).append((repo, digest))
    times = {node: entry.pulled for node, entry in nodes.items()}
    depth = dict.fromkeys(nodes, 0)
    changed = True
    rounds = 0
    while changed and rounds <= len(nodes):  # a referrer cycle cannot loop for ever
        changed = False
        rounds += 1
        for node, kept in keeps.items():
            for other in kept:
                if times[other] < times[node]:
                    times[other] = times[node]
                    changed = True
                if depth[other] < depth[node] + 1 and depth[node] < len(nodes):
                    depth[other] = depth[node] + 1
                    changed = True
    return times, depth


def plan(
    nodes: Mapping[Node, Cached],
    now: float,
    evict_after: float | None,
    max_size: int | None,
) -> list[tuple[Node, Reason]]:
    """What to evict, in the order to delete it (pure)."""
    times, depth = effective_times(nodes)
    victims: dict[Node, Reason] = {}
    if evict_after is not None:
        for node in nodes:
            if times[node] < now - evict_after:
                victims[node] = "age"
    if max_size is not None:
        remaining = {n: e for n, e in nodes.items() if n not in victims}
        users: dict[Digest, int] = {}
        sizes: dict[Digest, int] = {}
        for entry in remaining.values():
            for blob, size in entry.blobs.items():
                users[blob] = users.get(blob, 0) + 1
                sizes[blob] = size
        total = sum(sizes.values()) + sum(e.size for e in remaining.values())
        for node in sorted(remaining, key=lambda n: (times[n], depth[n], n)):
            if total <= max_size:
                break
            victims[node] = "size"
            entry = remaining[node]
            total -= entry.size
            for blob in entry.blobs:
                users[blob] -= 1
                if users[blob] == 0:
                    total -= sizes[blob]
    return sorted(victims.items(), key=lambda item: (depth[item[0]], item[0]))


class Evictor:
    def __init__(
        self,
        store: RegistryStore,
        config: ProxyConfig,
        routes: Routes,
        pulls: PullRecorder | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.routes = routes
        self.pulls = pulls
        self._parsed: dict[Digest, Cached] = {}  # content-addressed: never changes

    @property
    def enabled(self) -> bool:
        return bool(self.routes) and (
            self.config.evict_after is not None or self.config.max_size is not None
        )

    async def run(self) -> EvictionReport | None:
        """One pass; None when another process holds the lease."""
        lease = self.store.lease(LEASE, self.config.lease_ttl)
        if not await lease.acquire():
            return None
        async with lease.kept():
            return await self._run(lease)

    async def _run(self, lease: Lease) -> EvictionReport:
        if self.pulls is not None:
            await self.pulls.flush()
        now = await self.store.storage_clock(LEASE).now()
        nodes, tags = await self.inventory()
        report = EvictionReport(bytes_before=cache_bytes(nodes))
        victims = plan(nodes, now, self.config.evict_after, self.config.max_size)
        with acting_as(RequestContext(origin="proxy")):
            for node, reason in victims:
                lease.check()
                await self._evict(node, tags.get(node[0], {}))
                metrics.EVICTIONS.labels(reason).inc()
                report.evicted.append((node, reason))
        gone = {node for node, _ in victims}
        report.bytes_after = cache_bytes({n: e for n, e in nodes.items() if n not in gone})
        return report

    async def repositories(self) -> list[str]:
        names: list[str] = []
        for upstream in self.routes.upstreams:
            last: str | None = None
            while True:
                page = await self.store.catalog.list(
                    last, CATALOG_PAGE, (upstream.namespace + "/",)
                )
                names += page
                if len(page) < CATALOG_PAGE:
                    break
                last = page[-1]
        return names

    async def inventory(self) -> tuple[dict[Node, Cached], dict[str, dict[str, Digest]]]:
        """Every cached manifest, and the tags of every cached repository."""
        nodes: dict[Node, Cached] = {}
        tags: dict[str, dict[str, Digest]] = {}
        for name in await self.repositories():
            found, tags[name] = await self._repository(name)
            nodes.update(found)
        return nodes, tags

    async def _repository(self, name: str) -> tuple[dict[Node, Cached], dict[str, Digest]]:
        store = self.store
        revisions, pulled, links, tag_names = await asyncio.gather(
            store.manifests.revisions(name),
            store.proxy.pulled(name),
            store.blobs.links(name),
            store.tags.names(name),
        )
        targets = await asyncio.gather(*(store.tags.read(name, t) for t in tag_names))
        tags = {t: d for t, d in zip(tag_names, targets, strict=True) if d is not None}
        found: dict[Node, Cached] = {}
        for digest in sorted(revisions):
            parsed = await self._parse(digest)
            if parsed is None:
                continue
            when = pulled.get(digest)
            if when is None:
                when = await store.modified(Revision(name, digest))
            if when is None:
                continue  # deleted meanwhile
            found[(name, digest)] = Cached(
                when,
                parsed.size,
                {b: s for b, s in parsed.blobs.items() if b in links},
                parsed.children,
                parsed.subject,
            )
        return found, tags

    async def _parse(self, digest: Digest) -> Cached | None:
        if digest in self._parsed:
            return self._parsed[digest]
        try:
            body = await self.store.blobs.get_small(digest)
            manifest = parse_manifest(body, None)
        except (PathNotFoundError, RegistryError):
            return None
        parsed = Cached(
            0.0,
            len(body),
            {d.digest: d.size for d in manifest.blobs},
            frozenset(d.digest for d in manifest.manifests),
            manifest.subject.digest if manifest.subject else None,
        )
        if len(self._parsed) > 100_000:
            self._parsed.clear()
        self._parsed[digest] = parsed
        return parsed

    async def _evict(self, node: Node, tags: Mapping[str, Digest]) -> None:
        name, digest = node
        store = self.store
        with contextlib.suppress(RegistryError):  # deleted meanwhile
            await store.manifests.delete(name, str(digest))
        for tag in _naming(tags, digest):
            await store.proxy.forget_tag_check(name, tag)
        await store.proxy.forget_pulled(name, digest)
        await store.proxy.forget_referrers(name, digest)
        if self.pulls is not None:
            self.pulls.forget(name, digest)
        log.info("proxy: evicted %s@%s", name, digest)


def _naming(tags: Mapping[str, Digest], digest: Digest) -> Iterable[str]:
    return [t for t, d in tags.items() if d == digest]


class BackgroundEvictor:
    """The eviction loop of ``registry serve``: one pass every interval in one process of
    many (the lease), skipped while ``paused`` says so (read-only maintenance)."""

    def __init__(
        self,
        evictor: Evictor,
        interval: float,
        paused: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.evictor = evictor
        self.interval = interval
        self.paused = paused
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None and self.evictor.enabled:
            self._task = asyncio.create_task(self._loop(), name="registry-proxy-evict")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)

    async def _loop(self) -> None:
        while True:
            await self.evictor.store.clock.sleep(self.interval * random.uniform(0.9, 1.1))
            await self.run_once()

    async def run_once(self) -> EvictionReport | None:
        try:
            if self.paused is not None and await self.paused():
                return None
            report = await self.evictor.run()
            if report is not None and report.evicted:
                log.info(report.summary())
            return report
        except LeaseLostError as exc:
            log.error("proxy eviction stopped: %s", exc)
        except Exception:
            log.exception("proxy eviction failed")
        return None
