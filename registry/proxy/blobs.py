"""Blobs of cached repositories: served from the store when linked there, else streamed
from a fill (``fills.py``) while it stores them.

A blob stored for another repository is linked into this one only after this one's
upstream confirmed (HEAD) that it holds it there: content is shared by digest, access
is not, so a client never reads through repository A what only repository B's upstream
would give it. A range of an uncached blob is read from the fill when the fill is at
most ``FOLLOW_AHEAD`` bytes short of its start, and else forwarded upstream while the
fill goes on in the background.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from registry.errors import RegistryError
from registry.proxy import metrics
from registry.proxy.failures import spec_error
from registry.proxy.fills import BlobSource, Fills
from registry.proxy.routing import Route
from registry.proxy.upstreams import UpstreamClients
from registry.reference import ByteRange, Digest, parse_range
from registry.remote import RemoteError
from registry.store import RegistryStore

log = logging.getLogger("registry.proxy")

FOLLOW_AHEAD = 8 * 1024 * 1024


@dataclass
class BlobMiss:
    """An answer of an uncached blob: what the response carries."""

    status: int
    size: int | None  # the blob's
    length: int | None  # the body's (Content-Length); None: unknown
    content_range: str | None = None
    body: AsyncIterator[bytes] | None = None  # None for a HEAD
    closers: list[BlobSource] = field(default_factory=list)


class BlobCache:
    def __init__(self, store: RegistryStore, clients: UpstreamClients, fills: Fills) -> None:
        self.store = store
        self.clients = clients
        self.fills = fills

    async def stored(self, route: Route, digest: Digest) -> int | None:
        """The blob's size when the store serves it in ``route.local`` (linked there, or
        linked now after the upstream confirmed it); None when it must be fetched."""
        try:
            return (await self.store.blobs.stat(route.local, digest)).size
        except RegistryError:
            pass
        if not await self.store.blobs.exists(digest):
            return None
        await self._confirm(route, digest)
        info = await self.store.blobs.adopt(route.local, digest)
        return info.size if info is not None else None

    async def _confirm(self, route: Route, digest: Digest) -> int | None:
        try:
            return await self.clients.client(route.upstream).head_blob(route.remote, digest)
        except RemoteError as exc:
            raise spec_error(exc, "blob", {"digest": str(digest)}) from None

    async def head(self, route: Route, digest: Digest) -> BlobMiss:
        """A HEAD of an uncached blob: the running fill's size, or the upstream's HEAD.
        Fetches nothing."""
        fill = self.fills.running(digest)
        known = fill is not None and fill.route.local == route.local and fill.size.done()
        if fill is not None and known and fill.size.exception() is None:
            size = fill.size.result()
            if size is not None:
                return BlobMiss(200, size, size)
        size = await self._confirm(route, digest)
        return BlobMiss(200, size, size)

    async def get(self, route: Route, digest: Digest, range_header: str | None) -> BlobMiss | None:
        """A GET of an uncached blob, or None when it has been stored meanwhile."""
        source = await self.fills.source(route, digest)
        if source is None:
            return None
        metrics.MISSES.labels(route.upstream.name, "blob").inc()
        try:
            size = await source.size()
            byte_range = parse_range(range_header, size) if range_header and size else None
        except BaseException:
            source.close()
            raise
        if byte_range is None:
            return BlobMiss(200, size, size, body=source.read(), closers=[source])
        content_range = f"bytes {byte_range.start}-{byte_range.end}/{size}"
        if byte_range.start <= source.available() + FOLLOW_AHEAD:
            body = source.read(byte_range.start, byte_range.end + 1)
        else:
            source.close()  # the fill goes on without this request
            body = await self._forwarded(route, digest, size, byte_range)
        return BlobMiss(206, size, byte_range.length, content_range, body, [source])

    async def _forwarded(
        self, route: Route, digest: Digest, size: int | None, byte_range: ByteRange
    ) -> AsyncIterator[bytes]:
        client = self.clients.client(route.upstream)
        try:
            stream = await client.open_blob(route.remote, digest, size=size, byte_range=byte_range)
        except RemoteError as exc:
            raise spec_error(exc, "blob", {"digest": str(digest)}) from None

        async def body() -> AsyncIterator[bytes]:
            async with stream:
                async for chunk in stream:
                    yield chunk

        return body()
