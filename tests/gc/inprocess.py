"""The collector's test rig: a store and a collector in this process over a memory
driver, gated (tests/gated_driver.py) so that a test can stop any one storage operation
until it lets it go (to force an interleaving of a push and a collection), in virtual
time (the lease's settle time and a push's wait for a tombstone cost nothing), with a
storage clock the test moves to make everything stored look older (``age``)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

from registry.config import GcConfig
from registry.gc import Collector
from registry.manifest import parse_manifest
from registry.reference import Digest, parse_digest
from registry.store import RegistryStore
from storage_backends.memory import MemoryDriver
from tests.clocks import VirtualClock
from tests.gated_driver import GatedDriver
from tests.images import Image

HOUR = 3600.0


class CollectorRig:
    """A store and a collector over one gated memory driver whose modification times
    follow the rig's clock."""

    def __init__(self, **gc: Any) -> None:
        self.clock = VirtualClock()
        self.memory = MemoryDriver(clock=self.clock.time)
        self.driver = GatedDriver(self.memory)
        self.store = RegistryStore(self.driver, reference_budget=30, clock=self.clock)
        config = GcConfig(grace_period=60, **gc)
        self.collector = Collector(self.store, config, upload_expiry=24 * HOUR, settle=0.05)

    async def upload(self, repo: str, data: bytes) -> Digest:
        state = await self.store.uploads.create(repo)

        async def body() -> AsyncIterator[bytes]:
            yield data

        await self.store.uploads.append(repo, state, body())
        digest = Digest("sha256", hashlib.sha256(data).hexdigest())
        await self.store.uploads.commit(repo, state, digest)
        return digest

    async def push(
        self, repo: str, img: Image, tag: str | None = None, upload: bool = True
    ) -> None:
        for child in img.children:
            await self.push(repo, child)
        if upload:
            for data in img.blobs.values():
                await self.upload(repo, data)
        await self.store.manifests.put(repo, tag or img.digest, img.manifest, img.media_type)

    def age(self, seconds: float = HOUR) -> None:
        """Make everything stored so far look ``seconds`` older: the storage's clock
        moves on."""
        self.clock.jump(seconds)

    def stored(self, path: str) -> bool:
        return path in self.memory.store.files

    async def has_blob(self, digest: str | Digest) -> bool:
        d = parse_digest(digest) if isinstance(digest, str) else digest
        return await self.store.blobs.exists(d)

    async def pull(self, repo: str, reference: str) -> None:
        """Resolve and read everything the manifest needs, as a client pull would."""
        stored = await self.store.manifests.resolve(repo, reference)
        body = await self.store.manifests.content(stored)
        manifest = parse_manifest(body, stored.media_type)
        for child in manifest.manifests:
            await self.pull(repo, str(child.digest))
        for blob in manifest.blobs:
            info = await self.store.blobs.stat(repo, blob.digest)
            data = b"".join([c async for c in self.store.blobs.read(blob.digest)])
            assert len(data) == info.size
            assert hashlib.sha256(data).hexdigest() == blob.digest.hex
