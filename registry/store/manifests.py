"""Manifests and tags of a repository.

A manifest's bytes are a blob (stored once by digest); its revision record in the
repository says it belongs there and keeps its media type, size and subject. Writes go
in the order content -> revision -> referrer entry -> tag, so a crash at any point
leaves at worst an untagged manifest for the garbage collector, never a tag pointing
at nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass

from registry import errors
from registry.errors import RegistryError
from registry.manifest import Manifest, parse_manifest
from registry.reference import Digest, check_tag, is_digest_reference, parse_digest
from registry.store import layout
from registry.store.blobs import BlobStore
from registry.store.catalog import Catalog
from registry.store.referrers import ReferrersIndex
from storage_backends import Driver, PathNotFoundError


@dataclass(frozen=True)
class StoredManifest:
    digest: Digest
    media_type: str
    size: int
    subject: str | None = None


class ManifestStore:
    def __init__(
        self, driver: Driver, blobs: BlobStore, referrers: ReferrersIndex, catalog: Catalog
    ) -> None:
        self.driver = driver
        self.blobs = blobs
        self.referrers = referrers
        self.catalog = catalog

    # ------------------------------------------------------------------ reading

    async def resolve(self, name: str, reference: str) -> StoredManifest:
        """The manifest a tag or digest names in ``name``; MANIFEST_UNKNOWN otherwise."""
        digest = (
            await self.tag_target(name, reference)
            if not is_digest_reference(reference)
            else parse_digest(reference)
        )
        return await self.revision(name, digest)

    async def tag_target(self, name: str, tag: str) -> Digest:
        check_tag(tag)
        try:
            raw = await self.driver.get(layout.tag(name, tag))
        except PathNotFoundError:
            raise RegistryError(
                errors.MANIFEST_UNKNOWN,
                f"manifest tagged {tag!r} is not in {name!r}",
                detail={"tag": tag},
            ) from None
        return parse_digest(raw.decode())

    async def revision(self, name: str, digest: Digest) -> StoredManifest:
        try:
            raw = json.loads(await self.driver.get(layout.revision(name, digest)))
        except PathNotFoundError:
            raise RegistryError(
                errors.MANIFEST_UNKNOWN,
                f"manifest {digest} is not in {name!r}",
                detail={"digest": str(digest)},
            ) from None
        return StoredManifest(digest, raw["mediaType"], int(raw["size"]), raw.get("subject"))

    async def has_revision(self, name: str, digest: Digest) -> bool:
        try:
            await self.driver.stat(layout.revision(name, digest))
        except PathNotFoundError:
            return False
        return True

    async def content(self, stored: StoredManifest) -> bytes:
        try:
            return await self.blobs.get_small(stored.digest)
        except PathNotFoundError:
            raise RegistryError(
                errors.MANIFEST_UNKNOWN, detail={"digest": str(stored.digest)}
            ) from None

    # ------------------------------------------------------------------ writing

    async def put(
        self,
        name: str,
        reference: str,
        body: bytes,
        content_type: str | None,
        extra_tags: list[str] | None = None,
    ) -> tuple[StoredManifest, Manifest]:
        tags = [check_tag(t) for t in extra_tags or []]
        if is_digest_reference(reference):
            expected: Digest | None = parse_digest(reference)
            algorithm = expected.algorithm if expected else "sha256"
        else:
            tags.insert(0, check_tag(reference))
            expected, algorithm = None, "sha256"
        digest = Digest(algorithm, hashlib.new(algorithm, body).hexdigest())
        if expected is not None and expected != digest:
            raise RegistryError(
                errors.DIGEST_INVALID,
                f"manifest has digest {digest}, not {expected}",
                detail={"digest": str(expected)},
            )
        manifest = parse_manifest(body, content_type)
        await self._check_references(name, manifest)

        await self.blobs.put_small(digest, body)
        stored = StoredManifest(
            digest,
            manifest.media_type,
            len(body),
            str(manifest.subject.digest) if manifest.subject else None,
        )
        record = {"mediaType": stored.media_type, "size": stored.size, "subject": stored.subject}
        await self.driver.put(layout.revision(name, digest), json.dumps(record).encode())
        if manifest.subject is not None:
            await self.referrers.add(
                name,
                manifest.subject.digest,
                digest,
                manifest.referrer_descriptor(digest, len(body)),
            )
        for tag in tags:
            await self.driver.put(layout.tag(name, tag), str(digest).encode())
        await self.catalog.add(name)
        return stored, manifest

    async def _check_references(self, name: str, manifest: Manifest) -> None:
        async def missing_blob(d: Digest) -> bool:
            return not await self.blobs.is_linked(name, d)

        async def missing_manifest(d: Digest) -> bool:
            return not await self.has_revision(name, d)

        checks = [missing_blob(d.digest) for d in manifest.blobs]
        checks += [missing_manifest(d.digest) for d in manifest.manifests]
        results = await asyncio.gather(*checks)
        descriptors = [*manifest.blobs, *manifest.manifests]
        unknown = [str(d.digest) for d, miss in zip(descriptors, results, strict=True) if miss]
        if unknown:
            raise RegistryError(
                errors.MANIFEST_BLOB_UNKNOWN,
                f"manifest references content not in {name!r}: {', '.join(unknown[:5])}",
                detail={"digests": unknown[:50]},
            )

    # ------------------------------------------------------------------ deleting

    async def delete(self, name: str, reference: str) -> None:
        """By tag: untag (the manifest stays). By digest: the manifest and its tags."""
        if not is_digest_reference(reference):
            await self.tag_target(name, reference)
            await self.driver.delete(layout.tag(name, reference))
            return
        stored = await self.revision(name, parse_digest(reference))
        for tag in await self.tags_of(name, stored.digest):
            await self.driver.delete(layout.tag(name, tag))
        if stored.subject is not None:
            await self.referrers.remove(name, parse_digest(stored.subject), stored.digest)
        await self.driver.delete(layout.revision(name, stored.digest))

    async def tags_of(self, name: str, digest: Digest) -> list[str]:
        found = []
        for tag in await self.driver.list(layout.tags(name)):
            try:
                if (await self.driver.get(layout.tag(name, tag))).decode() == str(digest):
                    found.append(tag)
            except PathNotFoundError:
                continue
        return found

    # ------------------------------------------------------------------ tags

    async def repository_exists(self, name: str) -> bool:
        return await self.catalog.contains(name)

    async def list_tags(self, name: str, last: str | None, limit: int) -> list[str]:
        return await self.driver.list(layout.tags(name), start_after=last, limit=limit)
