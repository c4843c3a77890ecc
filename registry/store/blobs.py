"""Blobs: stored once by digest, visible in a repository only through its link.

Pushes *claim* the digests they rely on (``BlobStore.claim``) so that the garbage
collector, which runs while pushes go on, spares them; registry/gc/collector.py has the
protocol and the argument why it is safe.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from registry import errors
from registry.errors import RegistryError
from registry.reference import Digest
from registry.store import layout
from registry.store.catalog import Catalog
from storage_backends import Driver, PathNotFoundError

# Longest a push waits for the collector to finish with a digest it needs. A collector
# holds a tombstone for a few storage operations; only a crashed one leaves it longer
# (until its next run), and the push then fails cleanly instead of hanging.
CLAIM_WAIT = 30.0
# Half the default grace period (1 h); create_app passes the configured one.
DEFAULT_REFERENCE_BUDGET = 1800.0
_POLL_FIRST = 0.02
_POLL_MAX = 0.25


@dataclass(frozen=True)
class BlobInfo:
    digest: Digest
    size: int


class BlobBusyError(Exception):
    """The collector kept deleting something that holds the digest for CLAIM_WAIT."""

    def __init__(self, digest: Digest) -> None:
        super().__init__(f"{digest} is being garbage-collected")
        self.digest = digest


class BlobStore:
    def __init__(
        self,
        driver: Driver,
        catalog: Catalog,
        reference_budget: float = DEFAULT_REFERENCE_BUDGET,
    ) -> None:
        self.driver = driver
        self.catalog = catalog
        # A claim protects a digest for the collector's grace period only if what the
        # push writes on its strength is written within this many seconds of it.
        self.reference_budget = reference_budget

    async def stat(self, name: str, digest: Digest) -> BlobInfo:
        """The blob as seen through repository ``name``; BLOB_UNKNOWN unless linked there."""
        try:
            await self.driver.stat(layout.layer_link(name, digest))
            info = await self.driver.stat(layout.blob_data(digest))
        except PathNotFoundError:
            raise RegistryError(errors.BLOB_UNKNOWN, detail={"digest": str(digest)}) from None
        return BlobInfo(digest, info.size)

    async def exists(self, digest: Digest) -> bool:
        try:
            await self.driver.stat(layout.blob_data(digest))
        except PathNotFoundError:
            return False
        return True

    async def is_linked(self, name: str, digest: Digest) -> bool:
        try:
            await self.driver.stat(layout.layer_link(name, digest))
        except PathNotFoundError:
            return False
        return True

    def read(
        self, digest: Digest, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        return self.driver.read(layout.blob_data(digest), offset, length)

    async def url_for(self, digest: Digest, expires_in: int) -> str | None:
        return await self.driver.url_for(layout.blob_data(digest), expires_in)

    async def link(self, name: str, digest: Digest) -> None:
        """Link a stored blob into a repository. Rewriting an existing link refreshes its
        modification time, which the garbage collector's grace period is measured from.
        The catalog marker goes first: the collector finds repositories through it."""
        await self.catalog.add(name)
        await self.driver.put(layout.layer_link(name, digest), str(digest).encode())

    async def unlink(self, name: str, digest: Digest) -> None:
        if not await self.is_linked(name, digest):
            raise RegistryError(errors.BLOB_UNKNOWN, detail={"digest": str(digest)})
        await self.driver.delete(layout.layer_link(name, digest))

    async def mount(self, name: str, digest: Digest, source: str) -> BlobInfo | None:
        """Link a blob from ``source`` into ``name``; None when ``source`` does not hold it.

        Claimed before linking, as an upload is: the answer 201 then means a recent
        claim, which the collector honours for its grace period."""
        if not await self.is_linked(source, digest):
            return None
        started = time.monotonic()
        try:
            if digest not in await self.claim([digest]):
                return None
            await self.link(name, digest)
            if not await self.confirm(digest, started):
                return None
            info = await self.driver.stat(layout.blob_data(digest))
        except (BlobBusyError, PathNotFoundError):
            return None
        return BlobInfo(digest, info.size)

    async def confirm(self, digest: Digest, claimed_at: float) -> bool:
        """After a push placed what its claim (begun at monotonic ``claimed_at``) allowed:
        True if that was within the reference budget; otherwise claim again and say
        whether the data is still there. Raises BlobBusyError like ``claim``."""
        if time.monotonic() - claimed_at <= self.reference_budget:
            return True
        return digest in await self.claim([digest])

    async def claim(self, digests: Iterable[Digest], wait: float = CLAIM_WAIT) -> set[Digest]:
        """Tell the garbage collector that a push relies on ``digests`` now, wait until it
        is not deleting anything that holds them, and return those whose data exists.

        Per digest: write ``claimed``, then read the tombstone (if present: wait for it to
        go and start again), then look for the data -- in this order, which the
        collector's safety argument rests on (the last two in one listing). A claim that
        took longer than the reference budget is made again, so the returned claims are
        all recent. Raises BlobBusyError when a tombstone stays for ``wait`` seconds."""
        ordered = list(dict.fromkeys(digests))
        deadline = time.monotonic() + wait
        present = await asyncio.gather(*(self._claim(d, deadline) for d in ordered))
        return {d for d, here in zip(ordered, present, strict=True) if here}

    async def _claim(self, digest: Digest, deadline: float) -> bool:
        while True:
            started = time.monotonic()
            await self.driver.put(layout.blob_claimed(digest), b"")
            # One listing of the blob's folder answers both: is there a tombstone, and
            # (read no earlier) is there data. A listing of a few names is a snapshot on
            # both drivers, and an in-order scan reads "collecting" before "data".
            files = await self.driver.list(layout.blob_dir(digest))
            if layout.COLLECTING in files:
                await self._wait_collected(digest, deadline)
                continue
            # No "claimed": a collection that finished meanwhile deleted ours with the
            # blob's other files; claim again, or the next collection would not see it.
            if layout.CLAIMED in files and time.monotonic() - started <= self.reference_budget:
                return layout.DATA in files
            if time.monotonic() >= deadline:
                raise BlobBusyError(digest)

    async def is_collecting(self, digest: Digest) -> bool:
        # A read rather than a stat: on S3 a stat of a missing key costs a second request.
        try:
            await self.driver.get(layout.blob_collecting(digest))
        except PathNotFoundError:
            return False
        return True

    async def _wait_collected(self, digest: Digest, deadline: float) -> None:
        delay = _POLL_FIRST
        while await self.is_collecting(digest):
            if time.monotonic() >= deadline:
                raise BlobBusyError(digest)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)

    async def put_small(self, digest: Digest, data: bytes) -> None:
        """Store content already held in memory (manifests) at its content address."""
        if not await self.exists(digest):
            await self.driver.put(layout.blob_data(digest), data)

    async def get_small(self, digest: Digest) -> bytes:
        return await self.driver.get(layout.blob_data(digest))

    async def compute_digest(self, path: str, algorithm: str) -> str:
        """Hash a stored file (used when an upload's running hash is not at hand)."""
        hasher = hashlib.new(algorithm)
        async for chunk in self.driver.read(path):
            await asyncio.to_thread(hasher.update, chunk)
        return hasher.hexdigest()
