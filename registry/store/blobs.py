"""Blobs: stored once by digest, visible in a repository only through its link."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from registry import errors
from registry.errors import RegistryError
from registry.reference import Digest
from registry.store import layout
from registry.store.catalog import Catalog
from storage_backends import Driver, PathNotFoundError


@dataclass(frozen=True)
class BlobInfo:
    digest: Digest
    size: int


class BlobStore:
    def __init__(self, driver: Driver, catalog: Catalog) -> None:
        self.driver = driver
        self.catalog = catalog

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
        modification time, which the garbage collector's grace period is measured from."""
        await self.driver.put(layout.layer_link(name, digest), str(digest).encode())
        await self.catalog.add(name)

    async def unlink(self, name: str, digest: Digest) -> None:
        if not await self.is_linked(name, digest):
            raise RegistryError(errors.BLOB_UNKNOWN, detail={"digest": str(digest)})
        await self.driver.delete(layout.layer_link(name, digest))

    async def mount(self, name: str, digest: Digest, source: str) -> BlobInfo | None:
        """Link a blob from ``source`` into ``name``; None when ``source`` does not hold it."""
        if not await self.is_linked(source, digest):
            return None
        try:
            info = await self.driver.stat(layout.blob_data(digest))
        except PathNotFoundError:
            return None
        await self.link(name, digest)
        return BlobInfo(digest, info.size)

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
