"""Manifests and tags of a repository.

A manifest's bytes are a blob (stored once by digest); its revision record in the
repository says it belongs there and keeps its media type, size and subject. Writes go
in the order content -> revision -> referrer entry -> tag, so a crash at any point
leaves at worst an untagged manifest for the garbage collector, never a tag pointing
at nothing. Before writing, a PUT claims every digest it relies on (Claims.claim), so
that a collection running meanwhile spares them or the PUT fails cleanly.

Pulls (``resolve``, ``content``) may answer from the read cache (store/read_cache.py):
a tag is always read from storage, the revision it names may be one read less than the
cache's ttl ago, and a manifest's bytes once read are its bytes for good.
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
from registry.store.changes import Changes, ManifestDeleted, ManifestPushed, TagDeleted
from registry.store.claims import BlobBusyError, Claims
from registry.store.read_cache import ReadCache
from registry.store.referrers import ReferrersIndex
from registry.store.tags import TagStore
from storage_backends import Driver, PathNotFoundError

# Claims are made again when checking the references took longer than the budget.
_CLAIM_ATTEMPTS = 3


@dataclass(frozen=True)
class StoredManifest:
    digest: Digest
    media_type: str
    size: int
    subject: str | None = None


class ManifestStore:
    def __init__(
        self,
        driver: Driver,
        blobs: BlobStore,
        tags: TagStore,
        referrers: ReferrersIndex,
        catalog: Catalog,
        claims: Claims,
        changes: Changes,
        cache: ReadCache | None = None,
    ) -> None:
        self._driver = driver
        self.blobs = blobs
        self.tags = tags
        self.referrers = referrers
        self.catalog = catalog
        self.claims = claims
        self._changes = changes
        self._cache = ReadCache(claims.clock) if cache is None else cache

    # ------------------------------------------------------------------ reading

    async def resolve(self, name: str, reference: str) -> StoredManifest:
        """The manifest a tag or digest names in ``name``, for a pull; MANIFEST_UNKNOWN
        otherwise. The tag is read from storage; the revision may come from the cache."""
        digest = (
            await self.tags.target(name, reference)
            if not is_digest_reference(reference)
            else parse_digest(reference)
        )
        cache = self._cache
        stored = cache.revision(name, digest)
        if stored is None:
            started = cache.started()
            stored = await self.revision(name, digest)
            cache.keep_revision(name, digest, stored, started)
        return stored

    async def revision(self, name: str, digest: Digest) -> StoredManifest:
        """The revision record of ``digest`` in ``name``, read from storage."""
        try:
            raw = json.loads(await self._driver.get(layout.revision(name, digest)))
        except PathNotFoundError:
            raise RegistryError(
                errors.MANIFEST_UNKNOWN,
                f"manifest {digest} is not in {name!r}",
                detail={"digest": str(digest)},
            ) from None
        return StoredManifest(digest, raw["mediaType"], int(raw["size"]), raw.get("subject"))

    async def has_revision(self, name: str, digest: Digest) -> bool:
        try:
            await self._driver.stat(layout.revision(name, digest))
        except PathNotFoundError:
            return False
        return True

    async def revisions(self, name: str) -> set[Digest]:
        """Every manifest with a revision in ``name``."""
        listing = await self._driver.list(layout.revisions(name), recursive=True)
        return layout.listed_digests(listing)

    async def content(self, stored: StoredManifest) -> bytes:
        """The manifest's bytes, for a pull (from the cache when it has them)."""
        body = self._cache.manifest_body(stored.digest)
        if body is not None:
            return body
        try:
            body = await self.blobs.get_small(stored.digest)
        except PathNotFoundError:
            raise RegistryError(
                errors.MANIFEST_UNKNOWN, detail={"digest": str(stored.digest)}
            ) from None
        self._cache.keep_manifest_body(stored.digest, body)
        return body

    # ------------------------------------------------------------------ writing

    async def put(
        self,
        name: str,
        reference: str,
        body: bytes,
        content_type: str | None,
        extra_tags: list[str] | None = None,
        *,
        verify_references: bool = True,
    ) -> tuple[StoredManifest, Manifest]:
        """Store a manifest under its digest and tag it. ``verify_references`` False is
        for the pull-through cache, which stores a manifest before the blobs and index
        children it references: those are fetched when they are pulled."""
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
        previous = dict(zip(tags, await self.tags.targets(name, tags), strict=True))
        present = await self._claim_references(name, digest, manifest, previous, verify_references)
        await self._changes.before(
            ManifestPushed(name, digest, len(body), manifest, tuple(tags), previous)
        )

        if digest not in present:
            await self.blobs.put_small(digest, body)
        stored = StoredManifest(
            digest,
            manifest.media_type,
            len(body),
            str(manifest.subject.digest) if manifest.subject else None,
        )
        record = {"mediaType": stored.media_type, "size": stored.size, "subject": stored.subject}
        # The catalog marker before the revision: the garbage collector finds
        # repositories through it, so it must not miss one that holds a manifest.
        await self.catalog.add(name)
        await self._driver.put(layout.revision(name, digest), json.dumps(record).encode())
        # What this PUT stored is what a pull here reads next: a revision rewritten with
        # another media type must not be answered from before.
        self._cache.keep_revision(name, digest, stored, self._cache.started())
        self._cache.keep_manifest_body(digest, body)
        if manifest.subject is not None:
            await self.referrers.add(
                name,
                manifest.subject.digest,
                digest,
                manifest.referrer_descriptor(digest, len(body)),
            )
        for tag in tags:
            await self.tags.put(name, tag, digest)
        return stored, manifest

    async def _claim_references(
        self,
        name: str,
        digest: Digest,
        manifest: Manifest,
        previous: dict[str, Digest | None],
        verify: bool = True,
    ) -> set[Digest]:
        """Claim the manifest, what it references and what its tags name now (so that
        the collector cannot delete a tag this PUT is about to rewrite), check the
        references, and return the claimed digests whose data exists. The writes that
        follow start within the reference budget of the claims, so the claims are made
        again when checking took longer."""
        references = [*(d.digest for d in manifest.blobs), *(d.digest for d in manifest.manifests)]
        wanted = [
            digest,
            *(references if verify else []),
            *[d for d in previous.values() if d is not None],
        ]
        for _ in range(_CLAIM_ATTEMPTS):
            started = self.claims.start()
            try:
                present = await self.claims.claim(wanted)
            except BlobBusyError as exc:
                raise RegistryError(
                    errors.MANIFEST_BLOB_UNKNOWN,
                    f"{exc.digest} is being garbage-collected; push it again",
                    detail={"digests": [str(exc.digest)]},
                ) from None
            if verify:
                await self._check_references(name, manifest, present)
            if self.claims.within_budget(started):
                return present
        raise RegistryError(
            errors.MANIFEST_BLOB_UNKNOWN,
            "the manifest's references could not be confirmed in time; push it again",
        )

    async def _check_references(self, name: str, manifest: Manifest, present: set[Digest]) -> None:
        """Everything must be claimed with its data present, and linked (blobs) or a
        revision (index children) in ``name``; checked after the claims, as the
        collector's argument requires."""

        async def missing_blob(d: Digest) -> bool:
            return d not in present or not await self.blobs.is_linked(name, d)

        async def missing_manifest(d: Digest) -> bool:
            return d not in present or not await self.has_revision(name, d)

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
            target = await self.tags.target(name, reference)
            await self._changes.before(TagDeleted(name, reference, target))
            await self.tags.delete(name, reference)
            return
        stored = await self.revision(name, parse_digest(reference))
        tags = await self.tags.pointing_at(name, stored.digest)
        await self._changes.before(
            ManifestDeleted(name, stored.digest, stored.media_type, stored.size, tuple(tags))
        )
        for tag in tags:
            await self.tags.delete(name, tag)
        if stored.subject is not None:
            await self.referrers.remove(name, parse_digest(stored.subject), stored.digest)
        await self._driver.delete(layout.revision(name, stored.digest))
        self._cache.forget_revision(name, stored.digest)

    # ------------------------------------------------------------------ tags

    async def repository_exists(self, name: str) -> bool:
        return await self.catalog.contains(name)

    async def list_tags(self, name: str, last: str | None, limit: int) -> list[str]:
        return await self.tags.page(name, last, limit)
