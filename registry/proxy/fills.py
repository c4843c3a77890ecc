"""Fills: one upstream GET per uncached blob, however many clients want it.

A ``Fill`` is a task of its own, not of any request: it opens the upstream's blob
stream, appends what arrives to a spool (``spool.py``) that every client of the blob
reads at its own pace, and to an upload session of the store; when the upstream's bytes
have verified (``BlobStream`` hands out its last piece only after the digest and size
checked) it commits the upload, which makes the blob visible. The stream's check is the
store's too (``uploads.append(..., verified=digest)``): each byte is hashed once. So:

* the first byte reaches every client as soon as the upstream sends it;
* a client that goes away does not touch the fill; a fill every client abandoned at
  50% completes and is stored;
* a cut, padded or corrupt body never becomes a cache entry (the upload is cancelled)
  and every reader ends in ``FillFailed`` *before* the last byte, so its connection is
  cut instead of ending as a short 200 (handlers.py aborts it); the fill logs why, once.

Across processes (workers of one host, replicas on one bucket) the fill is announced by
a claim in storage (``store/proxy.py``) that names its spool and is rewritten every
``HEARTBEAT`` seconds. Another process that wants the blob follows that spool when it
can open it (same host: one upstream GET in all), and otherwise relays the blob for its
own clients with one GET of its own, unstored (the claim's owner stores it): best
effort, as the issue allows, and never a wait for a whole blob before the first byte. A
claim not rewritten for ``CLAIM_STALE`` seconds is taken over.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from registry.context import acting_as, current
from registry.errors import RegistryError
from registry.proxy import metrics
from registry.proxy.failures import spec_error, unavailable
from registry.proxy.routing import Route
from registry.proxy.spool import READ_MAX, Spool, SpoolFile
from registry.reference import Digest
from registry.remote import RemoteError
from registry.store import BlobData, FillClaim, RegistryStore, UploadState

if TYPE_CHECKING:
    from registry.proxy.upstreams import UpstreamClients

log = logging.getLogger("registry.proxy")

PIECE = 1024 * 1024  # the upstream's body is hashed and spooled in pieces of about this size
HEARTBEAT = 5.0
CLAIM_STALE = 30.0
SPOOL_WAIT = 2.0  # how long a follower waits for a fresh claim to name its spool
_POLL_FIRST, _POLL_MAX = 0.01, 0.2
_CLAIM_POLL = 1.0  # a follower idle this long asks the claim whether the fill still runs


class FillFailed(Exception):
    """The blob's fetch did not complete: what the reader handed out is all there is,
    and the client's connection must be cut. ``reported``: the fill has logged why."""

    def __init__(self, message: str, *, reported: bool = False) -> None:
        super().__init__(message)
        self.reported = reported


class Fill:
    """One upstream GET of a blob, spooled for every reader and, when ``storing``,
    stored."""

    def __init__(
        self,
        fills: Fills,
        route: Route,
        digest: Digest,
        *,
        storing: bool,
    ) -> None:
        self._fills = fills
        self.route = route
        self.digest = digest
        self.storing = storing
        loop = asyncio.get_running_loop()
        self.size: asyncio.Future[int | None] = loop.create_future()  # at the upstream's headers
        self.spool: Spool | None = None
        self.complete = False  # every byte arrived and verified, and is in the spool
        self.finished = False
        self.ok = False  # stored
        self.reported = False  # a failure was logged (once, here: not per reader)
        self.also_link: set[str] = set()  # repositories whose upstream confirmed the blob
        # The fill runs for nobody in particular: a change it makes is the cache's.
        self._context = dataclasses.replace(current(), origin="proxy")
        self.task = asyncio.ensure_future(self._run())

    @property
    def available(self) -> int:
        return self.spool.written if self.spool is not None else 0

    async def _run(self) -> None:
        store, route = self._fills.store, self.route
        upload = None
        heartbeat: asyncio.Task[None] | None = None
        with acting_as(self._context):
            try:
                client = self._fills.clients.client(route.upstream)
                if self.storing:
                    upload = await store.uploads.create(route.local)
                try:
                    stream = await client.open_blob(route.remote, self.digest, chunk_size=PIECE)
                except RemoteError as exc:
                    raise spec_error(exc, "blob", {"digest": str(self.digest)}) from None
                async with stream:
                    self.spool = Spool(self._fills.spool_dir)
                    self.size.set_result(stream.size)
                    if self.storing:
                        await self._fills.claim(self, stream.size)
                        heartbeat = asyncio.ensure_future(self._heartbeat(stream.size))
                    spool = self.spool

                    async def tee() -> AsyncIterator[bytes]:
                        async for chunk in stream:
                            await spool.append(chunk)
                            yield chunk

                    if upload is not None:
                        # The stream verifies itself: the store need not hash it again.
                        await store.uploads.append(
                            route.local, upload, tee(), verified=self.digest
                        )
                    else:
                        async for _ in tee():
                            pass
                    await spool.flush()
                    self.complete = True
                    spool.wake()
                if upload is not None:
                    await store.uploads.commit(route.local, upload, self.digest)
                    upload = None
                    for name in sorted(self.also_link - {route.local}):
                        await store.blobs.adopt(name, self.digest)
                self.ok = True
            except asyncio.CancelledError:
                raise
            except (RemoteError, RegistryError) as exc:
                metrics.FILLS_FAILED.labels(route.upstream.name).inc()
                self._report(exc)
                if not self.size.done():
                    error = exc if isinstance(exc, RegistryError) else spec_error(exc, "blob")
                    self.size.set_exception(error)
            except Exception as exc:
                metrics.FILLS_FAILED.labels(route.upstream.name).inc()
                log.exception("proxy: fetching %s of %s failed", self.digest, route.local)
                self.reported = True
                if not self.size.done():
                    self.size.set_exception(unavailable(route.upstream.name, str(exc)[:200]))
            finally:
                await self._finish(upload, heartbeat)

    def _report(self, exc: RemoteError | RegistryError) -> None:
        """One warning per failed fetch, however many clients it cuts off."""
        route = self.route
        if isinstance(exc, RemoteError):
            reason = exc.reason.removeprefix(f"{self.digest}: ")
        else:
            reason = exc.message
        log.warning(
            "proxy: fetching blob %s from upstream %s (for %s) failed: %s%s",
            self.digest,
            route.upstream.name,
            route.local,
            reason,
            "; nothing was cached, and its clients' connections are cut"
            if self.size.done()
            else "",
        )
        self.reported = True

    async def _finish(
        self, upload: UploadState | None, heartbeat: asyncio.Task[None] | None
    ) -> None:
        self.finished = True
        if not self.size.done():
            self.size.set_exception(unavailable(self.route.upstream.name, "the fetch stopped"))
        if not self.size.cancelled():
            self.size.exception()  # retrieved: no warning when nobody waited for it
        if heartbeat is not None:
            heartbeat.cancel()
        if self.spool is not None:
            self.spool.ended()
        self._fills.forget(self)
        # Shielded: a shutdown's cancellation must still leave no upload and no claim.
        with contextlib.suppress(Exception):
            await asyncio.shield(self._cleanup(upload))

    async def _cleanup(self, upload: UploadState | None) -> None:
        store = self._fills.store
        if upload is not None:
            await store.uploads.cancel(self.route.local, upload.upload_id)
        if self.storing:
            await store.proxy.release_fill_claim(self.digest, self._fills.owner)

    async def _heartbeat(self, size: int | None) -> None:
        while True:
            await self._fills.clock_sleep(HEARTBEAT)
            try:
                await self._fills.claim(self, size)
            except Exception as exc:
                log.warning("proxy: cannot renew the claim of %s: %s", self.digest, exc)

    async def read(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The blob's bytes from ``start`` to ``end`` (exclusive; None: the whole blob)
        as the fill writes them; FillFailed if the fill stops before."""
        await asyncio.shield(self.size)
        spool = self.spool
        assert spool is not None
        spool.acquire()
        try:
            offset = start
            while end is None or offset < end:
                changed = spool.changed()
                limit = READ_MAX if end is None else min(READ_MAX, end - offset)
                data = await spool.read(offset, limit)
                if data:
                    offset += len(data)
                    yield data
                    continue
                if (self.complete or self.finished) and offset >= spool.written:
                    if self.complete and (end is None or offset >= end):
                        return
                    raise FillFailed(
                        f"the fetch of {self.digest} stopped at {offset} bytes",
                        reported=self.reported,
                    )
                await changed.wait()
        finally:
            spool.release()


class Fills:
    """The fills of this process, by digest, and the decision whom a request follows."""

    def __init__(
        self,
        store: RegistryStore,
        clients: UpstreamClients,
        spool_dir: str | None,
    ) -> None:
        self.store = store
        self.clients = clients
        self.spool_dir = spool_dir
        self.owner = uuid.uuid4().hex
        self._fills: dict[Digest, Fill] = {}
        self._locks: dict[Digest, tuple[asyncio.Lock, int]] = {}

    async def clock_sleep(self, seconds: float) -> None:
        await self.store.clock.sleep(seconds)

    def running(self, digest: Digest) -> Fill | None:
        fill = self._fills.get(digest)
        return fill if fill is not None and not fill.finished else None

    def forget(self, fill: Fill) -> None:
        if self._fills.get(fill.digest) is fill:
            del self._fills[fill.digest]

    async def claim(self, fill: Fill, size: int | None) -> None:
        spool = fill.spool.path if fill.spool is not None else None
        await self.store.proxy.write_fill_claim(
            fill.digest,
            FillClaim(self.owner, fill.route.local, self.store.clock.time(), spool, size),
        )

    async def stop(self) -> None:
        """Cancel every fill (server shutdown): uploads cancelled, claims released."""
        tasks = [f.task for f in self._fills.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def source(self, route: Route, digest: Digest) -> BlobSource | None:
        """Where this request reads the uncached blob from: a fill of this process
        (joined or started), or another process's spool; None when the blob has been
        stored meanwhile (serve it from the store)."""
        # One decision at a time per digest; the lock lives while anyone holds or awaits it.
        lock, users = self._locks.get(digest, (asyncio.Lock(), 0))
        self._locks[digest] = (lock, users + 1)
        try:
            async with lock:
                return await self._source(route, digest)
        finally:
            lock, users = self._locks[digest]
            if users == 1:
                del self._locks[digest]
            else:
                self._locks[digest] = (lock, users - 1)

    async def _source(self, route: Route, digest: Digest) -> BlobSource | None:
        fill = self.running(digest)
        if fill is not None:
            metrics.COALESCED.labels(route.upstream.name).inc()
            if route.local != fill.route.local:
                await self._confirm(route, digest)
                fill.also_link.add(route.local)
            return FillSource(fill)
        if await self.store.blobs.exists(digest):
            return None  # a fill (here or elsewhere) has just stored it
        followed = await self._follow_other(route, digest)
        if followed is not None:
            metrics.COALESCED.labels(route.upstream.name).inc()
            return followed
        storing = not await self._claimed_elsewhere(digest)
        fill = Fill(self, route, digest, storing=storing)
        self._fills[digest] = fill
        if storing:
            # Announced before the first byte: a process asking meanwhile follows.
            with contextlib.suppress(Exception):
                await self.claim(fill, None)
        return FillSource(fill)

    async def _confirm(self, route: Route, digest: Digest) -> None:
        """The blob is fetched for another repository: this one's upstream must say it
        holds it too, before its client gets a byte."""
        try:
            await self.clients.client(route.upstream).head_blob(route.remote, digest)
        except RemoteError as exc:
            raise spec_error(exc, "blob", {"digest": str(digest)}) from None

    def _fresh(self, claim: FillClaim | None) -> bool:
        return (
            claim is not None
            and claim.owner != self.owner
            and self.store.clock.time() - claim.heartbeat < CLAIM_STALE
        )

    async def _claimed_elsewhere(self, digest: Digest) -> bool:
        return self._fresh(await self.store.proxy.fill_claim(digest))

    async def _follow_other(self, route: Route, digest: Digest) -> BlobSource | None:
        """Another process's spool, when a fresh claim names one this process can open."""
        claim = await self.store.proxy.fill_claim(digest)
        waited = 0.0
        while self._fresh(claim) and claim is not None and claim.spool is None:
            if waited >= SPOOL_WAIT:
                return None
            await asyncio.sleep(0.05)
            waited += 0.05
            claim = await self.store.proxy.fill_claim(digest)
        if not self._fresh(claim) or claim is None or claim.spool is None:
            return None
        if route.local != claim.repository:
            await self._confirm(route, digest)
        try:
            spool = SpoolFile(claim.spool)
        except OSError:
            return None  # another host's, or that fill is over
        return FollowedSource(self, route, digest, claim, spool)


class BlobSource:
    """What a response of an uncached blob reads from."""

    async def size(self) -> int | None:
        """The blob's size as the upstream announced it (None: not announced); raises
        the spec error when the upstream refused before the body."""
        raise NotImplementedError

    def available(self) -> int:
        """Bytes readable without waiting."""
        raise NotImplementedError

    def read(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what an unread source holds."""


class FillSource(BlobSource):
    def __init__(self, fill: Fill) -> None:
        self.fill = fill

    async def size(self) -> int | None:
        return await asyncio.shield(self.fill.size)

    def available(self) -> int:
        return self.fill.available

    def read(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return self.fill.read(start, end)


class FollowedSource(BlobSource):
    """Another process's fill, followed through its spool file and its claim."""

    def __init__(
        self, fills: Fills, route: Route, digest: Digest, claim: FillClaim, spool: SpoolFile
    ) -> None:
        self._fills = fills
        self._route = route
        self._digest = digest
        self._claim = claim
        self._spool = spool
        self._closed = False

    async def size(self) -> int | None:
        return self._claim.size

    def available(self) -> int:
        return self._spool.size()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._spool.close()

    async def read(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        try:
            if end is None and self._claim.size is not None:
                end = self._claim.size
            offset, pause, idle = start, _POLL_FIRST, 0.0
            while end is None or offset < end:
                limit = READ_MAX if end is None else min(READ_MAX, end - offset)
                data = await self._spool.read(offset, limit)
                if data:
                    offset += len(data)
                    pause, idle = _POLL_FIRST, 0.0
                    yield data
                    continue
                await asyncio.sleep(pause)
                idle += pause
                pause = min(pause * 2, _POLL_MAX)
                if idle >= _CLAIM_POLL:
                    idle = 0.0
                    end = await self._still_running(offset, end)
        finally:
            self.close()

    async def _still_running(self, offset: int, end: int | None) -> int | None:
        """Whether the followed fill still runs (its claim is fresh): the end to read to.
        Once it is over, the blob is stored (success) or the read fails."""
        store = self._fills.store
        claim = await store.proxy.fill_claim(self._digest)
        if claim is not None and claim.owner == self._claim.owner:
            if self._fills.store.clock.time() - claim.heartbeat < CLAIM_STALE:
                return end
            raise FillFailed(f"the process fetching {self._digest} stopped renewing its claim")
        if await store.blobs.exists(self._digest):
            if end is None:
                info = await store.stat(BlobData(self._digest))
                return info.size if info is not None else offset
            return end
        raise FillFailed(f"the fetch of {self._digest} in another process failed at {offset}")
