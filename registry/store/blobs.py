"""Blobs: stored once by digest, visible in a repository only through its link.

Pushes *claim* the digests they rely on (``Claims.claim``) so that the garbage
collector, which runs while pushes go on, spares them; store/claims.py has the
protocol and the argument why it is safe. Pulls (``stat``, ``stream``) may answer from
the read cache (store/read_cache.py); nothing a push or mount checks does.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass

from registry import errors
from registry.errors import RegistryError
from registry.reference import ALGORITHMS, Digest, parse_digest
from registry.store import layout
from registry.store.catalog import Catalog
from registry.store.changes import BlobMounted, BlobPushed, BlobUnlinked, Changes
from registry.store.claims import BlobBusyError, Claims
from registry.store.read_cache import ReadCache
from storage_backends import DirectRead, DirectReads, Driver, PathNotFoundError


@dataclass(frozen=True)
class BlobInfo:
    digest: Digest
    size: int


@dataclass
class BlobFiles:
    """What a blob's folder holds: its data, a push's claim, a collector's tombstone."""

    data: bool = False
    claimed: bool = False
    collecting: bool = False


class BlobStore:
    def __init__(
        self,
        driver: Driver,
        catalog: Catalog,
        claims: Claims,
        changes: Changes,
        redirect_expiry: float | None = None,
        cache: ReadCache | None = None,
    ) -> None:
        self._driver = driver
        self.catalog = catalog
        self.claims = claims
        self._changes = changes
        # Seconds a redirect URL stays valid; None: blobs are served by the registry.
        self.redirect_expiry = redirect_expiry
        self._cache = ReadCache(claims.clock) if cache is None else cache

    async def stat(self, name: str, digest: Digest) -> BlobInfo:
        """The blob as seen through repository ``name``, for a pull; BLOB_UNKNOWN unless
        linked there. A link read less than the cache's ttl ago is not read again, and a
        blob's size, once known, never is: a link implies the data, which the collector
        deletes only after every link (store/claims.py, C3)."""
        cache = self._cache
        size = cache.linked_size(name, digest)
        if size is not None:
            return BlobInfo(digest, size)
        started = cache.started()
        try:
            await self._driver.stat(layout.layer_link(name, digest))
            size = cache.blob_size(digest)
            if size is None:
                size = (await self._driver.stat(layout.blob_data(digest))).size
        except PathNotFoundError:
            raise RegistryError(errors.BLOB_UNKNOWN, detail={"digest": str(digest)}) from None
        cache.keep_link(name, digest, size, started)
        return BlobInfo(digest, size)

    async def exists(self, digest: Digest) -> bool:
        try:
            await self._driver.stat(layout.blob_data(digest))
        except PathNotFoundError:
            return False
        return True

    async def is_linked(self, name: str, digest: Digest) -> bool:
        try:
            await self._driver.stat(layout.layer_link(name, digest))
        except PathNotFoundError:
            return False
        return True

    def read(
        self, digest: Digest, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        return self._driver.read(layout.blob_data(digest), offset, length)

    async def stream(
        self, name: str, digest: Digest, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """The blob's bytes for a pull through ``name``, its first chunk already read: a
        blob deleted since ``stat`` (by a collector, or a process whose delete the cache
        has not seen yet) is BLOB_UNKNOWN before a response has begun, not a cut body."""
        chunks = self.read(digest, offset, length)
        try:
            first = await anext(chunks, b"")
        except PathNotFoundError:
            self._forget(name, digest)
            raise RegistryError(errors.BLOB_UNKNOWN, detail={"digest": str(digest)}) from None
        return _after(first, chunks)

    async def open_direct(
        self, name: str, digest: Digest, offset: int, length: int
    ) -> DirectRead | None:
        """``length`` bytes of the blob from ``offset`` for the server to send without a
        copy through the process (a local file, or the store's socket), the caller
        closes it; None when the storage cannot (then ``stream``); BLOB_UNKNOWN when the
        blob is gone (a collector ran since ``stat``)."""
        if not isinstance(self._driver, DirectReads):
            return None
        try:
            return await self._driver.open_direct(layout.blob_data(digest), offset, length)
        except PathNotFoundError:
            self._forget(name, digest)
            raise RegistryError(errors.BLOB_UNKNOWN, detail={"digest": str(digest)}) from None

    def _forget(self, name: str, digest: Digest) -> None:
        self._cache.forget_link(name, digest)
        self._cache.forget_blob(digest)

    async def redirect_url(self, digest: Digest) -> str | None:
        """Where a GET of the blob should be redirected to fetch it from the storage
        directly, or None when the registry serves it (redirects are off, or the driver
        cannot serve URLs)."""
        if self.redirect_expiry is None:
            return None
        return await self._driver.url_for(layout.blob_data(digest), int(self.redirect_expiry))

    async def link(self, name: str, digest: Digest) -> None:
        """Link a stored blob into a repository. Rewriting an existing link refreshes its
        modification time, which the garbage collector's grace period is measured from.
        The catalog marker goes first: the collector finds repositories through it."""
        await self.catalog.add(name)
        await self._driver.put(layout.layer_link(name, digest), str(digest).encode())

    async def unlink(self, name: str, digest: Digest) -> None:
        if not await self.is_linked(name, digest):
            raise RegistryError(errors.BLOB_UNKNOWN, detail={"digest": str(digest)})
        await self._changes.before(BlobUnlinked(name, digest))
        await self._driver.delete(layout.layer_link(name, digest))
        self._cache.forget_link(name, digest)

    async def links(self, name: str) -> set[Digest]:
        """The blobs linked into ``name``."""
        return layout.listed_digests(await self._driver.list(layout.layers(name), recursive=True))

    async def mount(self, name: str, digest: Digest, source: str) -> BlobInfo | None:
        """Link a blob from ``source`` into ``name``; None when ``source`` does not hold it.

        Claimed before linking, as an upload is: the answer 201 then means a recent
        claim, which the collector honours for its grace period."""
        if not await self.is_linked(source, digest):
            return None
        return await self.adopt(name, digest, source)

    async def adopt(self, name: str, digest: Digest, source: str | None = None) -> BlobInfo | None:
        """Link a stored blob into ``name`` whatever repository holds it; None when it is
        not stored. For ``mount`` (after its source check) and the pull-through cache,
        whose upstream has just confirmed that ``name`` holds the blob there."""
        started = self.claims.start()
        try:
            if digest not in await self.claims.claim([digest]):
                return None
            info = await self._driver.stat(layout.blob_data(digest))
            if source is not None:
                await self._changes.before(BlobMounted(name, digest, info.size, source))
            else:
                await self._changes.before(BlobPushed(name, digest, info.size))
            await self.link(name, digest)
            if not await self.claims.confirm(digest, started):
                return None
        except (BlobBusyError, PathNotFoundError):
            return None
        return BlobInfo(digest, info.size)

    async def put_small(self, digest: Digest, data: bytes) -> None:
        """Store content already held in memory and verified (manifests) at its content
        address. For a caller whose claim found no data: another push may have stored
        it since, and writing the same bytes again is harmless."""
        await self._driver.put(layout.blob_data(digest), data)

    async def get_small(self, digest: Digest) -> bytes:
        return await self._driver.get(layout.blob_data(digest))

    async def compute_digest(self, path: str, algorithm: str) -> str:
        """Hash a stored file (used when an upload's running hash is not at hand)."""
        hasher = hashlib.new(algorithm)
        async for chunk in self._driver.read(path):
            await asyncio.to_thread(hasher.update, chunk)
        return hasher.hexdigest()

    # ------------------------------------------------------------------ the whole store

    async def shards(self) -> list[str]:
        """The shards every blob folder is in (``<alg>/<hex[:2]>``): list them one by
        one with ``files_in``, so that no listing is larger than 1/256 of the store."""
        shards: list[str] = []
        for algorithm in await self._driver.list(layout.BLOBS):
            if algorithm in ALGORITHMS:
                folders = await self._driver.list(layout.blob_shards(algorithm))
                shards += [f"{algorithm}/{folder}" for folder in folders]
        return shards

    async def files(self, digest: Digest) -> BlobFiles:
        """What one blob's folder holds (one listing)."""
        names = await self._driver.list(layout.blob_dir(digest))
        return BlobFiles(
            data=layout.DATA in names,
            claimed=layout.CLAIMED in names,
            collecting=layout.COLLECTING in names,
        )

    @staticmethod
    def shard_of(digest: Digest) -> str:
        """The shard (``<alg>/<hex[:2]>``) ``shards`` and ``files_in`` name the blob's
        folder by."""
        return f"{digest.algorithm}/{digest.hex[:2]}"

    async def files_in(self, shard: str) -> dict[Digest, BlobFiles]:
        """Every blob folder of a shard, by the files it holds."""
        parsed = layout.blob_shard_id(shard)
        if parsed is None:
            return {}
        algorithm, folder = parsed
        found: dict[Digest, BlobFiles] = defaultdict(BlobFiles)
        listing = await self._driver.list(layout.blob_shard(algorithm, folder), recursive=True)
        for relative in listing:
            parts = layout.blob_file_in_shard(relative)
            if parts is None:
                continue
            try:
                digest = parse_digest(f"{algorithm}:{parts[0]}")
            except RegistryError:
                continue
            files = found[digest]
            if parts[1] == layout.DATA:
                files.data = True
            elif parts[1] == layout.CLAIMED:
                files.claimed = True
            elif parts[1] == layout.COLLECTING:
                files.collecting = True
        return dict(found)


async def _after(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        if first:
            yield first
        async for chunk in rest:
            yield chunk
    finally:
        # A consumer that stops early closes this generator: close the driver's now,
        # so that it releases its file or connection at once.
        aclose = getattr(rest, "aclose", None)
        if aclose is not None:
            await aclose()
