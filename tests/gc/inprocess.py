"""An in-process registry for collector tests: a store and a collector over the
filesystem driver, wrapped so that a test can stop any one storage operation until it
lets it go (to force an interleaving of a push and a collection), and make everything
stored look older by moving the storage's clock (``age``)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from registry.config import GcConfig
from registry.gc import Collector
from registry.manifest import parse_manifest
from registry.reference import Digest, parse_digest
from registry.store import RegistryStore
from storage_backends import Driver, FileInfo, FileWriter
from storage_backends.filesystem import FilesystemDriver
from tests.clocks import ClockedDriver, ShiftedClock
from tests.images import Image

HOUR = 3600.0
WAIT = 10.0


class Gate:
    """Holds the ``skip``-th next ``op`` on ``path`` until ``release`` is set."""

    def __init__(self, op: str, path: str, skip: int) -> None:
        self.op, self.path, self.skip = op, path, skip
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.used = False

    async def wait_reached(self) -> None:
        await asyncio.wait_for(self.reached.wait(), WAIT)


class GatedDriver:
    """A driver with gates on chosen operations."""

    name = "gated"

    def __init__(self, inner: Driver) -> None:
        self.inner = inner
        self.gates: list[Gate] = []

    def gate(self, op: str, path: str, skip: int = 0) -> Gate:
        gate = Gate(op, path, skip)
        self.gates.append(gate)
        return gate

    async def _pass(self, op: str, path: str) -> None:
        for gate in self.gates:
            if gate.used or gate.op != op or gate.path != path:
                continue
            if gate.skip:
                gate.skip -= 1
                continue
            gate.used = True
            gate.reached.set()
            await gate.release.wait()

    async def get(self, path: str) -> bytes:
        await self._pass("get", path)
        return await self.inner.get(path)

    async def put(self, path: str, data: bytes) -> None:
        await self._pass("put", path)
        await self.inner.put(path, data)

    async def stat(self, path: str) -> FileInfo:
        await self._pass("stat", path)
        return await self.inner.stat(path)

    async def delete(self, path: str) -> None:
        await self._pass("delete", path)
        await self.inner.delete(path)

    async def delete_many(self, paths: Sequence[str]) -> None:
        # A gate on "delete" of one of the paths holds the whole batch.
        for path in paths:
            await self._pass("delete", path)
        await self.inner.delete_many(paths)

    async def move(self, src: str, dst: str) -> None:
        await self._pass("move", dst)
        await self.inner.move(src, dst)

    def read(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self.inner.read(path, offset, length)

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        return await self.inner.writer(path, append)

    async def list(self, prefix: str, **kwargs: Any) -> list[str]:
        return await self.inner.list(prefix, **kwargs)

    async def url_for(self, path: str, expires_in: int = 1200) -> str | None:
        return None

    async def close(self) -> None:
        return None


class Registry:
    """A store and a collector over one gated filesystem driver whose modification
    times follow a clock the test moves."""

    def __init__(self, root: Path, **gc: Any) -> None:
        self.root = root
        self.clock = ShiftedClock()
        self.driver = GatedDriver(ClockedDriver(FilesystemDriver(root), self.clock))
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
        self.clock.advance(seconds)

    def stored(self, path: str) -> bool:
        return (self.root / path).is_file()

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
