"""Replication between two stores in this process (memory drivers): the copier, the
runner and full passes without any server -- ``LocalRegistry`` on both sides of a copy,
content written through the store as the routes write it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from registry.config import ReplicationRuleConfig
from registry.reference import Digest, parse_digest
from registry.replication.endpoints import BlobReader, LocalRegistry
from registry.replication.runner import RuleRunner
from registry.store import RegistryStore
from storage_backends.memory import MemoryDriver
from tests.images import Image, sha256


def new_store() -> RegistryStore:
    return RegistryStore(MemoryDriver())


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def put_blob(store: RegistryStore, repository: str, data: bytes) -> Digest:
    digest = parse_digest(sha256(data))
    state = await store.uploads.create(repository)
    await store.uploads.append(repository, state, _once(data))
    await store.uploads.commit(repository, state, digest)
    return digest


async def put_image(
    store: RegistryStore, repository: str, img: Image, tag: str | None = None
) -> Digest:
    for child in img.children:
        await put_image(store, repository, child)
    for data in img.blobs.values():
        await put_blob(store, repository, data)
    stored, _ = await store.manifests.put(
        repository, tag or img.digest, img.manifest, img.media_type
    )
    return stored.digest


def runner(source: RegistryStore, target: RegistryStore, **fields: Any) -> RuleRunner:
    """A rule from ``source`` to ``target`` (both this process's stores); its state
    (status, failures, upload slots) is kept in ``source``."""
    doc = {
        "name": "r",
        "direction": "push",
        "remote": {"url": "http://unused.invalid"},
        **fields,
    }
    r = RuleRunner(source, ReplicationRuleConfig.model_validate(doc))
    r.source = LocalRegistry(source, "r")
    r.target = LocalRegistry(target, "r")
    return r


class Cut(Exception):
    pass


class BreakingSource(LocalRegistry):
    """Reads blobs in 64 KiB pieces and breaks after ``limit`` bytes of one read."""

    def __init__(self, store: RegistryStore, limit: int) -> None:
        super().__init__(store, "r")
        self.limit = limit

    def blob_reader(self, repository: str, digest: Digest, size: int) -> BlobReader:
        inner = super().blob_reader(repository, digest, size)

        async def read(offset: int) -> AsyncIterator[bytes]:
            sent = 0
            async for chunk in inner(offset):
                for i in range(0, len(chunk), 64 * 1024):
                    piece = chunk[i : i + 64 * 1024]
                    if sent + len(piece) > self.limit:
                        raise Cut(f"cut after {sent} bytes")
                    sent += len(piece)
                    yield piece

        return read


async def manifest_bytes(store: RegistryStore, repository: str, reference: str) -> bytes | None:
    found = await LocalRegistry(store, "t").manifest(repository, reference)
    return found.body if found is not None else None


def image_of(layers: list[bytes], tag_note: str = "") -> Image:
    """An OCI image of exactly these layers (and a config of its own)."""
    import json
    import os

    from tests.images import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, descriptor

    config = json.dumps({"architecture": "amd64", "os": "linux", "n": os.urandom(8).hex()})
    config_bytes = (config + tag_note).encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config_bytes),
        "layers": [descriptor(OCI_LAYER, layer) for layer in layers],
    }
    blobs = {sha256(b): b for b in [config_bytes, *layers]}
    return Image(json.dumps(doc).encode(), OCI_MANIFEST, blobs)
