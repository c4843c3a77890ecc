"""The two sides of a copy, behind one interface: this registry's store
(``LocalRegistry``) and another registry over the distribution API
(``RemoteRegistry``). A push rule copies from the first to the second, a pull rule the
other way; the copier knows neither.

Manifests travel as their exact bytes (``Artifact``): never parsed into a model and
written back. Blob uploads resume through a ``Resume`` slot the copier persists in
storage: for a remote target it holds the upload session (URL and acknowledged offset),
for this registry the id of its own upload session, whose bytes are in storage already.
Writes to this registry run as origin ``replication`` (registry/context.py), so that
the events they cause are told apart and push rules do not send them back.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from registry import errors
from registry.context import RequestContext, acting_as
from registry.errors import RegistryError
from registry.manifest import OCI_INDEX
from registry.reference import ByteRange, Digest, is_valid_name
from registry.remote import (
    NotFound,
    RegistryClient,
    Unsupported,
    UploadSession,
    referrers_tag,
)
from registry.replication.rules import NameFilter
from registry.store import RegistryStore

# Opens a blob's content from an offset to its end (called again on each resume).
BlobReader = Callable[[int], AsyncIterator[bytes]]

_PAGE = 1000  # names per listing of this registry's store
# Names asked for per page of a remote's listing (registries cap it: ECR at 1000, some
# at 100); the client follows the Link header to the next page.
REMOTE_PAGE = 100


@dataclass(frozen=True)
class Artifact:
    """A manifest exactly as stored: its bytes, media type and digest."""

    body: bytes
    media_type: str
    digest: Digest


class Resume(Protocol):
    """Where one blob upload stands, persisted so that another process can go on."""

    async def load(self) -> dict[str, Any] | None: ...

    async def save(self, doc: dict[str, Any]) -> None: ...

    async def clear(self) -> None: ...


class Endpoint(Protocol):
    """One side of a copy; ``name`` is what logs and status call it."""

    name: str

    # reading
    async def repositories(self, names: NameFilter) -> list[str]: ...
    async def tags(self, repository: str) -> list[str]: ...
    async def tag_digest(self, repository: str, tag: str) -> Digest | None: ...
    async def manifest(self, repository: str, reference: str | Digest) -> Artifact | None: ...
    async def has_manifest(self, repository: str, digest: Digest) -> bool: ...
    async def referrers(self, repository: str, digest: Digest) -> list[dict[str, Any]]: ...
    def blob_reader(self, repository: str, digest: Digest, size: int) -> BlobReader: ...

    # writing
    async def has_blob(self, repository: str, digest: Digest) -> bool: ...
    async def mount_blob(self, repository: str, digest: Digest, source: str) -> bool: ...
    async def push_blob(
        self,
        repository: str,
        digest: Digest,
        size: int,
        reader: BlobReader,
        resume: Resume,
        chunk_size: int,
    ) -> None: ...
    async def abandon_upload(self, resume: dict[str, Any]) -> None:
        """Cancel the upload session a ``Resume`` document left by ``push_blob``
        describes (one of another kind or gone: nothing to do)."""
        ...

    async def put_manifest(self, repository: str, reference: str, artifact: Artifact) -> None: ...
    async def index_referrer(
        self, repository: str, subject: Digest, descriptor: dict[str, Any]
    ) -> None: ...
    async def delete_tag(self, repository: str, tag: str) -> bool: ...
    async def delete_manifest(self, repository: str, digest: Digest) -> bool: ...
    async def aclose(self) -> None: ...


# ------------------------------------------------------------------------ this registry


def _unknown(exc: RegistryError) -> bool:
    return exc.code in (errors.MANIFEST_UNKNOWN, errors.BLOB_UNKNOWN, errors.NAME_UNKNOWN)


class LocalRegistry:
    """This registry, through its store."""

    name = "this registry"

    def __init__(self, store: RegistryStore, rule: str) -> None:
        self.store = store
        self._context = RequestContext(
            origin="replication",
            request_id=f"replication-{rule}",
            user_agent=f"registry-replication/{rule}",
        )

    async def repositories(self, names: NameFilter) -> list[str]:
        found: list[str] = []
        last: str | None = None
        while True:
            page = await self.store.catalog.list(last, _PAGE, names.prefixes())
            found += [n for n in page if names.matches(n)]
            if len(page) < _PAGE:
                return found
            last = page[-1]

    async def tags(self, repository: str) -> list[str]:
        return await self.store.tags.names(repository)

    async def tag_digest(self, repository: str, tag: str) -> Digest | None:
        return await self.store.tags.read(repository, tag)

    async def manifest(self, repository: str, reference: str | Digest) -> Artifact | None:
        manifests = self.store.manifests
        try:
            stored = await manifests.resolve(repository, str(reference))
            body = await manifests.content(stored)
        except RegistryError as exc:
            if _unknown(exc):
                return None
            raise
        return Artifact(body, stored.media_type, stored.digest)

    async def has_manifest(self, repository: str, digest: Digest) -> bool:
        return await self.store.manifests.has_revision(repository, digest)

    async def referrers(self, repository: str, digest: Digest) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        last: str | None = None
        while True:
            page, more = await self.store.referrers.page(repository, digest, last, _PAGE)
            found += [d for _, d in page]
            if not more or not page:
                return found
            last = page[-1][0]

    def blob_reader(self, repository: str, digest: Digest, size: int) -> BlobReader:
        blobs = self.store.blobs

        async def read(offset: int) -> AsyncIterator[bytes]:
            await blobs.stat(repository, digest)  # linked there, or BLOB_UNKNOWN
            async for chunk in blobs.read(digest, offset):
                yield chunk

        return read

    async def has_blob(self, repository: str, digest: Digest) -> bool:
        return await self.store.blobs.is_linked(repository, digest)

    async def mount_blob(self, repository: str, digest: Digest, source: str) -> bool:
        with acting_as(self._context):
            return await self.store.blobs.mount(repository, digest, source) is not None

    async def push_blob(
        self,
        repository: str,
        digest: Digest,
        size: int,
        reader: BlobReader,
        resume: Resume,
        chunk_size: int,
    ) -> None:
        """Into an upload session of this registry: its bytes are in storage as they
        arrive, so a resumed copy reads the source from the session's size on."""
        uploads = self.store.uploads
        with acting_as(self._context):
            # Only a blob larger than a chunk is worth a slot (two small writes).
            doc = await resume.load() if size > chunk_size else None
            state = None
            if doc is not None and isinstance(doc.get("upload_id"), str):
                try:
                    state = await uploads.get(repository, doc["upload_id"])
                except RegistryError:
                    state = None  # expired and purged: start over
            if state is None:
                state = await uploads.create(repository)
                if size > chunk_size:
                    await resume.save({"upload_id": state.upload_id, "repository": repository})
            offset = await uploads.size(repository, state)
            try:
                if offset > size:
                    await uploads.cancel(repository, state.upload_id)
                    raise RegistryError(errors.BLOB_UPLOAD_INVALID, "upload longer than the blob")
                if offset < size:
                    await uploads.append(repository, state, reader(offset))
                await uploads.commit(repository, state, digest)
            except RegistryError:
                await resume.clear()  # refused for good (a digest mismatch cancels it too)
                raise
            if size > chunk_size:
                await resume.clear()

    async def abandon_upload(self, resume: dict[str, Any]) -> None:
        upload_id, repository = resume.get("upload_id"), resume.get("repository")
        if not isinstance(upload_id, str) or not isinstance(repository, str):
            return
        if not is_valid_name(repository):
            return
        try:
            await self.store.uploads.get(repository, upload_id)  # a valid id, still there
        except RegistryError:
            return
        await self.store.uploads.cancel(repository, upload_id)

    async def put_manifest(self, repository: str, reference: str, artifact: Artifact) -> None:
        with acting_as(self._context):
            await self.store.manifests.put(
                repository, reference, artifact.body, artifact.media_type
            )

    async def index_referrer(
        self, repository: str, subject: Digest, descriptor: dict[str, Any]
    ) -> None:
        """Nothing to do: this registry indexes referrers when their manifest is put."""

    async def delete_tag(self, repository: str, tag: str) -> bool:
        with acting_as(self._context):
            try:
                await self.store.manifests.delete(repository, tag)
            except RegistryError as exc:
                if _unknown(exc):
                    return False
                raise
        return True

    async def delete_manifest(self, repository: str, digest: Digest) -> bool:
        with acting_as(self._context):
            try:
                await self.store.manifests.delete(repository, str(digest))
            except RegistryError as exc:
                if _unknown(exc):
                    return False
                raise
        return True

    async def aclose(self) -> None:
        """The store belongs to the app."""


# ------------------------------------------------------------------------ a remote


class RemoteRegistry:
    """Another registry, through the distribution API only."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self.name = client.settings.origin
        self._referrers_api: dict[str, bool] = {}  # per repository: does it have one?

    async def repositories(self, names: NameFilter) -> list[str]:
        literal = names.literal_names()
        if literal is not None:
            return literal
        catalog = self.client.iter_catalog(page_size=REMOTE_PAGE)
        return [n async for n in catalog if names.matches(n)]

    async def tags(self, repository: str) -> list[str]:
        try:
            return await self.client.list_tags(repository, page_size=REMOTE_PAGE)
        except NotFound:
            return []

    async def tag_digest(self, repository: str, tag: str) -> Digest | None:
        try:
            return (await self.client.head_manifest(repository, tag)).digest
        except NotFound:
            return None

    async def manifest(self, repository: str, reference: str | Digest) -> Artifact | None:
        try:
            m = await self.client.get_manifest(repository, reference)
        except NotFound:
            return None
        return Artifact(m.body, m.media_type, m.digest)

    async def has_manifest(self, repository: str, digest: Digest) -> bool:
        try:
            await self.client.head_manifest(repository, digest)
        except NotFound:
            return False
        return True

    async def referrers(self, repository: str, digest: Digest) -> list[dict[str, Any]]:
        try:
            return (await self.client.get_referrers(repository, digest)).manifests
        except NotFound:
            return []

    def blob_reader(self, repository: str, digest: Digest, size: int) -> BlobReader:
        client = self.client

        async def read(offset: int) -> AsyncIterator[bytes]:
            # From the start the stream is verified against the digest; a resumed part
            # cannot be, and the target verifies the whole when the upload is committed.
            part = ByteRange(offset, size - 1) if offset > 0 else None
            async with await client.open_blob(
                repository, digest, size=size, byte_range=part
            ) as stream:
                async for chunk in stream:
                    yield chunk

        return read

    async def has_blob(self, repository: str, digest: Digest) -> bool:
        return await self.client.blob_exists(repository, digest)

    async def mount_blob(self, repository: str, digest: Digest, source: str) -> bool:
        return await self.client.mount_blob(repository, digest, source)

    async def push_blob(
        self,
        repository: str,
        digest: Digest,
        size: int,
        reader: BlobReader,
        resume: Resume,
        chunk_size: int,
    ) -> None:
        if size <= chunk_size:
            await self.client.push_blob(repository, digest, reader(0), size)
            return
        doc = await resume.load()
        session = None
        if doc is not None and doc.get("repository") == repository:
            try:
                session = UploadSession(repository, str(doc["location"]), int(doc["offset"]))
            except (KeyError, TypeError, ValueError):
                session = None

        async def acknowledged(s: UploadSession) -> None:
            doc = {"repository": s.repository, "location": s.location, "offset": s.offset}
            await resume.save(doc)

        await self.client.push_blob_chunked(
            repository,
            digest,
            size,
            reader,
            chunk_size=chunk_size,
            session=session,
            on_progress=acknowledged,
        )
        await resume.clear()

    async def abandon_upload(self, resume: dict[str, Any]) -> None:
        try:
            session = UploadSession(
                str(resume["repository"]), str(resume["location"]), int(resume["offset"])
            )
        except (KeyError, TypeError, ValueError):
            return
        await self.client.cancel_upload(session)  # one the remote dropped already: fine

    async def put_manifest(self, repository: str, reference: str, artifact: Artifact) -> None:
        await self.client.put_manifest(repository, reference, artifact.body, artifact.media_type)

    async def index_referrer(
        self, repository: str, subject: Digest, descriptor: dict[str, Any]
    ) -> None:
        """On a remote without the referrers API, list the referrer in the referrers tag
        schema's index (``<alg>-<hex>``), as OCI clients do; nothing to do otherwise."""
        if self._referrers_api.get(repository) is None:
            listed = await self.client.get_referrers(repository, subject)
            self._referrers_api[repository] = listed.source == "api"
            if listed.source == "api":
                return
        elif self._referrers_api[repository]:
            return
        tag = referrers_tag(subject)
        try:
            current = await self.client.get_manifest(repository, tag, accept=(OCI_INDEX,))
            doc = json.loads(current.body)
            if current.media_type != OCI_INDEX or not isinstance(doc, dict):
                doc = _empty_index()
        except NotFound:
            doc = _empty_index()
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            manifests = doc["manifests"] = []
        if any(isinstance(d, dict) and d.get("digest") == descriptor["digest"] for d in manifests):
            return
        manifests.append(descriptor)
        body = json.dumps(doc, separators=(",", ":")).encode()
        await self.client.put_manifest(repository, tag, body, OCI_INDEX)

    async def delete_tag(self, repository: str, tag: str) -> bool:
        """Untag; on a remote that cannot (distribution before v3), delete the manifest
        when no other tag names it -- and refuse when one does."""
        try:
            await self.client.delete_tag(repository, tag)
            return True
        except NotFound:
            return False
        except Unsupported:
            pass
        digest = await self.tag_digest(repository, tag)
        if digest is None:
            return False
        others = [
            t
            for t in await self.tags(repository)
            if t != tag and await self.tag_digest(repository, t) == digest
        ]
        if others:
            raise Unsupported(
                f"the remote cannot delete a tag alone, and {digest} is also tagged "
                f"{', '.join(others[:3])}",
                upstream=self.name,
                operation="tag_delete",
            )
        return await self.delete_manifest(repository, digest)

    async def delete_manifest(self, repository: str, digest: Digest) -> bool:
        try:
            await self.client.delete_manifest(repository, digest)
        except NotFound:
            return False
        return True

    async def aclose(self) -> None:
        await self.client.aclose()


def _empty_index() -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
