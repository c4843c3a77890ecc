"""Manifests of cached repositories: by digest cached for good, by tag for the
upstream's ``tag_ttl``, then revalidated with a HEAD (which Docker Hub does not count as
a pull) and fetched with a GET only when the tag moved.

A tag's last check is a record beside it (``store/proxy.py``) and, in the process that
made or read it, a memo: within the TTL a pull costs no upstream request and, once the
memo is warm, no storage read beyond the manifest's own. Concurrent pulls of one tag or
digest share one upstream request (``SingleFlight``).

When the revalidation fails (5xx, 429, timeout, refused, wrong content) the cached copy
is served while its last successful check is younger than ``max_stale`` (default: any
age), with a ``Warning``; a 404 upstream removes the cached tag (the cache mirrors the
upstream's tags); anything else is the spec error with the upstream's reason.

Manifests are stored before the blobs they reference (``verify_references=False``):
the blobs follow when clients pull them. Store writes run as the cache's
(``origin="proxy"``), so that the store's listeners tell fills from client pushes. A
manifest the store refuses (an unparseable one, a listener's refusal) is served from the
upstream's bytes and not cached.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections import OrderedDict
from dataclasses import dataclass

from registry import errors
from registry.context import acting_as, current
from registry.errors import RegistryError
from registry.proxy import metrics
from registry.proxy.failures import may_serve_stale, spec_error, stale_warning
from registry.proxy.pulls import PullRecorder
from registry.proxy.routing import Route
from registry.proxy.single_flight import SingleFlight
from registry.proxy.upstreams import UpstreamClients
from registry.reference import Digest, is_digest_reference, is_valid_tag, parse_digest
from registry.remote import NotFound, RemoteError, RemoteManifest
from registry.store import RegistryStore, TagCheck

log = logging.getLogger("registry.proxy")

_MEMO_SIZE = 10_000


@dataclass(frozen=True)
class ManifestAnswer:
    digest: Digest
    media_type: str
    size: int
    body: bytes | None  # None for a HEAD
    warning: str | None = None  # a stale copy: why


@dataclass(frozen=True)
class _Outcome:
    """What one (shared) upstream exchange decided: the digest to serve, and the
    upstream's bytes when it fetched them (the store may have refused them)."""

    digest: Digest
    warning: str | None = None
    fetched: RemoteManifest | None = None


class ManifestCache:
    def __init__(self, store: RegistryStore, clients: UpstreamClients, pulls: PullRecorder) -> None:
        self.store = store
        self.clients = clients
        self.pulls = pulls
        self._flights: SingleFlight[_Outcome] = SingleFlight()
        self._memo: OrderedDict[tuple[str, str], TagCheck] = OrderedDict()

    async def answer(self, route: Route, reference: str, *, head: bool) -> ManifestAnswer:
        kind = route.upstream.name
        if is_digest_reference(reference):
            digest = parse_digest(reference)
            if await self.store.manifests.has_revision(route.local, digest):
                metrics.HITS.labels(kind, "manifest").inc()
                outcome = _Outcome(digest)
            else:
                metrics.MISSES.labels(kind, "manifest").inc()
                outcome = await self._flights.run(
                    ("digest", route.local, digest), lambda: self._fetch(route, digest, None)
                )
        else:
            outcome = await self._by_tag(route, reference)
        answer = await self._served(route, outcome, head)
        self.pulls.note(route.local, answer.digest)
        return answer

    async def _by_tag(self, route: Route, tag: str) -> _Outcome:
        kind = route.upstream.name
        if not is_valid_tag(tag):
            raise RegistryError(errors.MANIFEST_UNKNOWN, detail={"tag": tag[:200]})
        cached = await self.store.tags.read(route.local, tag)
        if cached is None:
            metrics.MISSES.labels(kind, "manifest").inc()
            return await self._flights.run(
                ("tag", route.local, tag), lambda: self._fetch(route, tag, tag)
            )
        check = await self._check(route.local, tag, cached)
        if check is None and route.upstream.config.writable:
            metrics.HITS.labels(kind, "manifest").inc()
            return _Outcome(cached)  # pushed here: the local tag rules
        if check is not None and self._age(check) < route.upstream.config.tag_ttl:
            metrics.HITS.labels(kind, "manifest").inc()
            return _Outcome(cached)
        metrics.MISSES.labels(kind, "manifest").inc()
        return await self._flights.run(
            ("tag", route.local, tag), lambda: self._revalidate(route, tag, cached, check)
        )

    def _age(self, check: TagCheck) -> float:
        return self.store.clock.time() - check.checked_at

    async def _check(self, name: str, tag: str, cached: Digest) -> TagCheck | None:
        """The last check of the tag, if it named what the tag names now (a tag moved by
        a push, or a check whose tag write was lost, counts as never checked)."""
        check = self._memo.get((name, tag))
        if check is None or check.digest != cached:
            check = await self.store.proxy.tag_check(name, tag)
            if check is not None:
                self._remember(name, tag, check)
        return check if check is not None and check.digest == cached else None

    def _remember(self, name: str, tag: str, check: TagCheck) -> None:
        self._memo[(name, tag)] = check
        self._memo.move_to_end((name, tag))
        while len(self._memo) > _MEMO_SIZE:
            self._memo.popitem(last=False)

    async def _revalidate(
        self, route: Route, tag: str, cached: Digest, check: TagCheck | None
    ) -> _Outcome:
        client = self.clients.client(route.upstream)
        try:
            info = await client.head_manifest(route.remote, tag)
            if info.digest == cached:
                await self._record(route.local, tag, cached)
                return _Outcome(cached)
            fetched = await client.get_manifest(route.remote, info.digest)
        except RemoteError as exc:
            if isinstance(exc, NotFound):
                await self._untag(route, tag)
                raise spec_error(exc, "manifest", {"tag": tag}) from None
            if may_serve_stale(exc) and self._within_stale_limit(route, check):
                metrics.STALE.labels(route.upstream.name).inc()
                log.warning(
                    "proxy: serving %s:%s stale, upstream failed: %s", route.local, tag, exc
                )
                return _Outcome(cached, stale_warning(exc))
            raise spec_error(exc, "manifest", {"tag": tag}) from None
        await self._keep(route, tag, fetched)
        return _Outcome(fetched.digest, fetched=fetched)

    def _within_stale_limit(self, route: Route, check: TagCheck | None) -> bool:
        limit = route.upstream.config.max_stale
        if limit is None:
            return True
        return check is not None and self._age(check) <= limit

    async def _fetch(self, route: Route, reference: str | Digest, tag: str | None) -> _Outcome:
        client = self.clients.client(route.upstream)
        try:
            fetched = await client.get_manifest(route.remote, reference)
        except RemoteError as exc:
            detail = {"tag": tag} if tag else {"digest": str(reference)}
            raise spec_error(exc, "manifest", detail) from None
        await self._keep(route, tag, fetched)
        return _Outcome(fetched.digest, fetched=fetched)

    async def _keep(self, route: Route, tag: str | None, manifest: RemoteManifest) -> None:
        """Store what the upstream sent (tagged when fetched by tag); the check record
        goes first, so that a lost tag write leaves a check that names no tag."""
        with acting_as(dataclasses.replace(current(), origin="proxy")):
            if tag is not None:
                await self._record(route.local, tag, manifest.digest)
            try:
                await self.store.manifests.put(
                    route.local,
                    tag if tag is not None else str(manifest.digest),
                    manifest.body,
                    manifest.media_type,
                    verify_references=False,
                )
            except RegistryError as exc:
                log.warning(
                    "proxy: %s@%s served but not cached: %s",
                    route.local,
                    manifest.digest,
                    exc.message,
                )

    async def _record(self, name: str, tag: str, digest: Digest) -> None:
        check = TagCheck(digest, self.store.clock.time())
        await self.store.proxy.record_tag_check(name, tag, digest, check.checked_at)
        self._remember(name, tag, check)

    async def _untag(self, route: Route, tag: str) -> None:
        """The upstream has no such tag (any more): neither has the cache."""
        self._memo.pop((route.local, tag), None)
        with acting_as(dataclasses.replace(current(), origin="proxy")):
            with contextlib.suppress(RegistryError):  # gone already
                await self.store.manifests.delete(route.local, tag)
            await self.store.proxy.forget_tag_check(route.local, tag)

    async def _served(self, route: Route, outcome: _Outcome, head: bool) -> ManifestAnswer:
        manifests = self.store.manifests
        fetched = outcome.fetched
        if fetched is None or await manifests.has_revision(route.local, outcome.digest):
            stored = await manifests.revision(route.local, outcome.digest)
            body = None if head else await manifests.content(stored)
            return ManifestAnswer(
                stored.digest, stored.media_type, stored.size, body, outcome.warning
            )
        # The store refused it: the upstream's bytes.
        return ManifestAnswer(
            fetched.digest,
            fetched.media_type,
            fetched.size,
            None if head else fetched.body,
            outcome.warning,
        )
