"""``RegistryClient``: everything this registry asks of another one, over the
distribution API only -- reads for the pull-through cache, writes for replication.

Operation names (``UpstreamRequest.operation`` and ``RemoteError.operation``): ping,
token, manifest_head, manifest_get, manifest_put, manifest_delete, tag_delete, blob_head,
blob_get, tags, catalog, referrers, mount, upload_start, upload_status, upload_chunk,
upload_finish, upload_cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl, urljoin, urlsplit

from registry.manifest import OCI_INDEX
from registry.reference import ByteRange, Digest, is_valid_name, is_valid_tag
from registry.remote.bandwidth import TokenBucket
from registry.remote.blobs import BlobStream
from registry.remote.errors import (
    NotFound,
    ProtocolError,
    RemoteError,
    Unauthorized,
    Unavailable,
    Unsupported,
    VerificationError,
)
from registry.remote.events import RequestHook
from registry.remote.headers import RateLimit, content_range, next_link, upload_offset
from registry.remote.manifests import (
    MANIFEST_MAX,
    MANIFEST_MEDIA_TYPES,
    ManifestInfo,
    RemoteManifest,
    digest_of,
    media_type_of,
    try_digest,
)
from registry.remote.session import Answer, Call, Session, same_origin
from registry.remote.settings import RemoteSettings
from registry.remote.uploads import (
    DEFAULT_CHUNK_SIZE,
    BlobSource,
    ProgressHook,
    SourceReader,
    UploadSession,
)

log = logging.getLogger("registry.remote")

LISTING_MAX = 16 * 1024 * 1024  # one page of tags, repositories or referrers
FILTERS_APPLIED = "org.opencontainers.referrers.filtersApplied"


@dataclass(frozen=True)
class Page:
    """One page of a tag list or of the catalog; ``next`` is where the next page is."""

    items: list[str]
    next: str | None


@dataclass(frozen=True)
class Referrers:
    """The referrers of a manifest: descriptors as the remote wrote them."""

    manifests: list[dict[str, Any]]
    source: Literal["api", "tag"]  # the referrers API, or the referrers tag schema


def referrers_tag(digest: Digest) -> str:
    """The referrers tag schema's tag of a subject: ``<alg>-<hex>``, at most 128 chars."""
    return f"{digest.algorithm}-{digest.hex}"[:128]


def _repo(name: str) -> str:
    if not is_valid_name(name):
        raise ValueError(f"invalid repository name: {name[:300]!r}")
    return name


def _reference(reference: str | Digest) -> str:
    if isinstance(reference, Digest):
        return str(reference)
    if ":" in reference:
        digest = try_digest(reference)
        if digest is None:
            raise ValueError(f"invalid digest: {reference[:200]!r}")
        return str(digest)
    if not is_valid_tag(reference):
        raise ValueError(f"invalid tag: {reference[:200]!r}")
    return reference


def _pull(repo: str) -> tuple[str, ...]:
    return (f"repository:{repo}:pull",)


def _push(repo: str) -> tuple[str, ...]:
    return (f"repository:{repo}:pull,push",)


def _digits(value: str) -> bool:
    """ASCII digits only: str.isdigit() also takes "¹", which int() refuses."""
    return value.isascii() and value.isdigit()


def _length(headers: Any) -> int | None:
    value = headers.get("content-length")
    return int(value) if value is not None and _digits(value.strip()) else None


class RegistryClient:
    """A client of one remote registry; share one per remote (it holds the connection
    pool and the token cache) and close it (``async with``)."""

    def __init__(
        self,
        settings: RemoteSettings,
        *,
        name: str | None = None,
        on_request: RequestHook | None = None,
        max_bytes_per_second: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.name = name or settings.host
        bucket = TokenBucket(max_bytes_per_second) if max_bytes_per_second else None
        self._session = Session(settings, self.name, on_request, clock, bucket)

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._session.aclose()

    @property
    def rate_limit(self) -> RateLimit | None:
        """Docker Hub's ``ratelimit-*`` headers of the last answer that had them."""
        return self._session.rate_limit

    async def _fetch(self, call: Call, limit: int) -> tuple[Answer, bytes]:
        answer = await self._session.open(call)
        try:
            body = b"" if call.method == "HEAD" else await answer.read(limit)
        except RemoteError as exc:
            await answer.aclose(error=type(exc).__name__)
            raise
        await answer.aclose()
        return answer, body

    def _error(self, kind: type[RemoteError], reason: str, operation: str) -> RemoteError:
        return self._session.failure(kind, reason, operation)

    # ------------------------------------------------------------------ base

    async def ping(self) -> None:
        """``GET /v2/``, authenticated when the remote asks for it (Basic, or a token
        without scope, as ``docker login`` does): wrong credentials show here as
        Unauthorized. Raises a RemoteError."""
        await self._fetch(Call("ping", "GET", "/v2/"), 64 * 1024)

    # ------------------------------------------------------------------ manifests

    async def head_manifest(self, repository: str, reference: str | Digest) -> ManifestInfo:
        """Digest, media type and size without the body (HEADs do not count against
        Docker Hub's pull limit). Falls back to a GET when the remote sends no digest."""
        repo, ref = _repo(repository), _reference(reference)
        call = Call(
            "manifest_head",
            "HEAD",
            f"/v2/{repo}/manifests/{ref}",
            _pull(repo),
            headers=(("Accept", ", ".join(MANIFEST_MEDIA_TYPES)),),
        )
        answer, _ = await self._fetch(call, 0)
        digest = try_digest(answer.headers.get("docker-content-digest"))
        media_type = media_type_of(answer.headers.get("content-type"), None)
        size = _length(answer.headers)
        if digest is None or media_type is None or size is None:
            return (await self.get_manifest(repo, ref)).info
        if ":" in ref and str(digest) != ref:
            raise self._error(
                VerificationError,
                f"asked for {ref}, the remote answered {digest}",
                "manifest_head",
            )
        return ManifestInfo(digest, media_type, size)

    async def get_manifest(
        self,
        repository: str,
        reference: str | Digest,
        *,
        accept: tuple[str, ...] = MANIFEST_MEDIA_TYPES,
        max_size: int = MANIFEST_MAX,
    ) -> RemoteManifest:
        """The exact bytes, media type and digest. By digest the bytes are verified
        against it; by tag the digest is computed and checked against the remote's
        Docker-Content-Digest."""
        repo, ref = _repo(repository), _reference(reference)
        call = Call(
            "manifest_get",
            "GET",
            f"/v2/{repo}/manifests/{ref}",
            _pull(repo),
            headers=(("Accept", ", ".join(accept)),),
        )
        answer, body = await self._fetch(call, max_size)
        media_type = media_type_of(answer.headers.get("content-type"), body)
        if media_type is None:
            raise self._error(ProtocolError, "manifest without a media type", "manifest_get")
        claimed = try_digest(answer.headers.get("docker-content-digest"))
        wanted = try_digest(ref) if ":" in ref else claimed
        digest = digest_of(body, wanted.algorithm if wanted else "sha256")
        if wanted is not None and digest != wanted:
            raise self._error(
                VerificationError,
                f"manifest {ref} has digest {digest}, expected {wanted}",
                "manifest_get",
            )
        return RemoteManifest(body, media_type, digest)

    async def put_manifest(
        self, repository: str, reference: str | Digest, body: bytes, media_type: str
    ) -> Digest:
        """Push the exact bytes under a tag or their digest; returns their digest."""
        repo, ref = _repo(repository), _reference(reference)
        wanted = try_digest(ref) if ":" in ref else None
        digest = digest_of(body, wanted.algorithm if wanted else "sha256")
        if wanted is not None and digest != wanted:
            raise ValueError(f"the manifest's digest is {digest}, not {wanted}")
        call = Call(
            "manifest_put",
            "PUT",
            f"/v2/{repo}/manifests/{ref}",
            _push(repo),
            headers=(("Content-Type", media_type),),
            body=body,
            expect=(200, 201, 202),
        )
        answer, _ = await self._fetch(call, 64 * 1024)
        claimed = try_digest(answer.headers.get("docker-content-digest"))
        if claimed is not None and claimed.algorithm == digest.algorithm and claimed != digest:
            raise self._error(
                VerificationError,
                f"the remote stored {claimed}, we sent {digest}",
                "manifest_put",
            )
        return digest

    async def delete_manifest(self, repository: str, digest: Digest) -> None:
        repo = _repo(repository)
        await self._fetch(
            Call(
                "manifest_delete",
                "DELETE",
                f"/v2/{repo}/manifests/{digest}",
                (f"repository:{repo}:delete",),
                expect=(200, 202, 204),
            ),
            64 * 1024,
        )

    async def delete_tag(self, repository: str, tag: str) -> None:
        """Untag (distribution-spec 1.1). Raises Unsupported where the remote cannot:
        a 405, or distribution before v3, which reads the tag as a digest (400
        DIGEST_INVALID)."""
        repo, ref = _repo(repository), _reference(tag)
        if ":" in ref:
            raise ValueError("delete_tag takes a tag; use delete_manifest for a digest")
        call = Call(
            "tag_delete",
            "DELETE",
            f"/v2/{repo}/manifests/{ref}",
            (f"repository:{repo}:delete",),
            expect=(200, 202, 204),
        )
        try:
            await self._fetch(call, 64 * 1024)
        except ProtocolError as exc:
            if exc.code != "DIGEST_INVALID":
                raise
            raise self._error(
                Unsupported, f"the remote cannot delete tags ({exc.reason})", "tag_delete"
            ) from None

    # ------------------------------------------------------------------ blobs

    async def head_blob(self, repository: str, digest: Digest) -> int | None:
        """The blob's size as the remote announces it (None if it does not say);
        raises NotFound."""
        repo = _repo(repository)
        answer, _ = await self._fetch(
            Call("blob_head", "HEAD", f"/v2/{repo}/blobs/{digest}", _pull(repo)), 0
        )
        return _length(answer.headers)

    async def blob_exists(self, repository: str, digest: Digest) -> bool:
        try:
            await self.head_blob(repository, digest)
        except NotFound:
            return False
        return True

    async def open_blob(
        self,
        repository: str,
        digest: Digest,
        *,
        size: int | None = None,
        byte_range: ByteRange | None = None,
        chunk_size: int | None = None,
    ) -> BlobStream:
        """Start a blob GET (following redirects, without credentials to other hosts)
        and return its verifying stream; the caller iterates and closes it.

        ``size`` (from the descriptor) is checked against what the remote announces before
        any byte is read. ``byte_range`` asks for part of the blob (206); a remote that
        answers the whole blob is read up to the range's end. ``chunk_size`` None yields
        pieces as they arrive."""
        repo = _repo(repository)
        headers: tuple[tuple[str, str], ...] = ()
        if byte_range is not None:
            headers = (("Range", f"bytes={byte_range.start}-{byte_range.end}"),)
        answer = await self._session.open(
            Call(
                "blob_get",
                "GET",
                f"/v2/{repo}/blobs/{digest}",
                _pull(repo),
                headers=headers,
                expect=(200, 206),
            )
        )
        try:
            return self._blob_stream(answer, digest, size, byte_range, chunk_size)
        except RemoteError as exc:
            await answer.aclose(error=type(exc).__name__)
            raise

    def _blob_stream(
        self,
        answer: Answer,
        digest: Digest,
        size: int | None,
        byte_range: ByteRange | None,
        chunk_size: int | None,
    ) -> BlobStream:
        declared = _length(answer.headers)

        def mismatch(reason: str) -> RemoteError:
            return self._error(VerificationError, f"{digest}: {reason}", "blob_get")

        if byte_range is None:
            if answer.status != 200:
                raise self._error(ProtocolError, "206 to a request without Range", "blob_get")
            if size is not None and declared is not None and declared != size:
                raise mismatch(f"the remote announces {declared} bytes, the blob has {size}")
            expected = size if size is not None else declared
            return BlobStream(self._session, answer, digest, expected, None, 0, chunk_size)
        if answer.status == 206:
            parsed = content_range(answer.headers.get("content-range"))
            if parsed is None:
                raise self._error(ProtocolError, "206 without a valid Content-Range", "blob_get")
            start, last, total = parsed
            if start != byte_range.start or last > byte_range.end:
                raise mismatch(
                    f"asked for bytes {byte_range.start}-{byte_range.end}, got {start}-{last}"
                )
            if size is not None and total is not None and total != size:
                raise mismatch(f"the remote announces {total} bytes, the blob has {size}")
            got = ByteRange(start, last)
            if declared is not None and declared != got.length:
                raise mismatch(f"Content-Length {declared} for a range of {got.length}")
            return BlobStream(self._session, answer, digest, got.length, got, 0, chunk_size)
        # 200: the remote ignored Range; read the whole body up to the range's end.
        total = size if size is not None else declared
        end = byte_range.end if total is None else min(byte_range.end, total - 1)
        got = ByteRange(byte_range.start, end)
        return BlobStream(
            self._session, answer, digest, got.length, got, byte_range.start, chunk_size
        )

    # ------------------------------------------------------------------ listings

    def _next(self, answer: Answer, operation: str) -> str | None:
        link = next_link(answer.headers.get("link"))
        if link is None:
            return None
        target = urljoin(answer.url, link)
        if not same_origin(target, self._session.origin):
            raise self._error(ProtocolError, "a Link to another host", operation)
        parts = urlsplit(target)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    async def _page(
        self,
        operation: str,
        target: str,
        scopes: tuple[str, ...],
        key: str,
        params: tuple[tuple[str, str], ...] = (),
    ) -> Page:
        path, _, query = target.partition("?")
        merged = tuple(parse_qsl(query, keep_blank_values=True)) + params
        answer, body = await self._fetch(Call(operation, "GET", path, scopes, merged), LISTING_MAX)
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise self._error(ProtocolError, "the listing is not JSON", operation) from None
        items = doc.get(key) if isinstance(doc, dict) else None
        items = [] if items is None else items
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise self._error(ProtocolError, f"{key} is not a list of strings", operation)
        return Page(items, self._next(answer, operation))

    @staticmethod
    def _limits(n: int | None, last: str | None) -> tuple[tuple[str, str], ...]:
        params: list[tuple[str, str]] = []
        if n is not None:
            params.append(("n", str(n)))
        if last is not None:
            params.append(("last", last))
        return tuple(params)

    async def tags_page(
        self, repository: str, *, n: int | None = None, last: str | None = None
    ) -> Page:
        repo = _repo(repository)
        return await self._page(
            "tags", f"/v2/{repo}/tags/list", _pull(repo), "tags", self._limits(n, last)
        )

    async def _pages(
        self, first: Page, operation: str, scopes: tuple[str, ...], key: str
    ) -> AsyncIterator[str]:
        page = first
        seen: set[str] = set()
        while True:
            for item in page.items:
                yield item
            if page.next is None:
                return
            if page.next in seen or not page.items:
                raise self._error(ProtocolError, "the pagination does not advance", operation)
            seen.add(page.next)
            page = await self._page(operation, page.next, scopes, key)

    async def iter_tags(
        self, repository: str, *, page_size: int | None = None
    ) -> AsyncIterator[str]:
        """Every tag, following the Link header page by page."""
        first = await self.tags_page(repository, n=page_size)
        async for tag in self._pages(first, "tags", _pull(repository), "tags"):
            yield tag

    async def list_tags(self, repository: str, *, page_size: int | None = None) -> list[str]:
        return [t async for t in self.iter_tags(repository, page_size=page_size)]

    async def catalog_page(self, *, n: int | None = None, last: str | None = None) -> Page:
        return await self._page(
            "catalog",
            "/v2/_catalog",
            ("registry:catalog:*",),
            "repositories",
            self._limits(n, last),
        )

    async def iter_catalog(self, *, page_size: int | None = None) -> AsyncIterator[str]:
        first = await self.catalog_page(n=page_size)
        async for name in self._pages(first, "catalog", ("registry:catalog:*",), "repositories"):
            yield name

    async def list_catalog(self, *, page_size: int | None = None) -> list[str]:
        return [r async for r in self.iter_catalog(page_size=page_size)]

    # ------------------------------------------------------------------ referrers

    async def get_referrers(
        self, repository: str, digest: Digest, *, artifact_type: str | None = None
    ) -> Referrers:
        """The referrers of ``digest``: from the referrers API (all pages), or, when the
        remote has none (404), from the referrers tag schema. Filtered by
        ``artifact_type`` here when the remote did not filter."""
        repo = _repo(repository)
        params = (("artifactType", artifact_type),) if artifact_type else ()
        target: str | None = f"/v2/{repo}/referrers/{digest}"
        found: list[dict[str, Any]] = []
        filtered = False
        seen: set[str] = set()
        while target is not None:
            call = Call(
                "referrers",
                "GET",
                target.partition("?")[0],
                _pull(repo),
                tuple(parse_qsl(target.partition("?")[2])) + params,
                headers=(("Accept", OCI_INDEX),),
            )
            try:
                answer, body = await self._fetch(call, LISTING_MAX)
            except NotFound:
                if found:
                    raise
                return await self._referrers_by_tag(repo, digest, artifact_type)
            doc = self._index(body, "referrers")
            found += _descriptors(doc)
            annotations = doc.get("annotations")
            if isinstance(annotations, dict):
                filtered = "artifactType" in str(annotations.get(FILTERS_APPLIED, "")).split(",")
            seen.add(target)
            target = self._next(answer, "referrers")
            params = ()  # the next link carries the query
            if target in seen:
                raise self._error(ProtocolError, "the pagination does not advance", "referrers")
        if artifact_type and not filtered:
            found = [d for d in found if d.get("artifactType") == artifact_type]
        return Referrers(found, "api")

    def _index(self, body: bytes, operation: str) -> dict[str, Any]:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise self._error(ProtocolError, "the referrers list is not JSON", operation) from None
        if not isinstance(doc, dict):
            raise self._error(ProtocolError, "the referrers list is not an index", operation)
        return doc

    async def _referrers_by_tag(
        self, repo: str, digest: Digest, artifact_type: str | None
    ) -> Referrers:
        try:
            index = await self.get_manifest(repo, referrers_tag(digest), accept=(OCI_INDEX,))
        except NotFound:
            return Referrers([], "tag")
        # A remote that reads "sha256-<hex>" as the digest itself answers the subject:
        # only an OCI index that is not the subject is a referrers list.
        if index.media_type != OCI_INDEX or index.digest == digest:
            log.info("%s: %s:%s is not a referrers index", self.name, repo, referrers_tag(digest))
            return Referrers([], "tag")
        found = _descriptors(self._index(index.body, "referrers"))
        if artifact_type:
            found = [d for d in found if d.get("artifactType") == artifact_type]
        return Referrers(found, "tag")

    # ------------------------------------------------------------------ uploads

    def _session_from(
        self, answer: Answer, repo: str, fallback: UploadSession | None, operation: str
    ) -> UploadSession:
        location = answer.headers.get("location")
        if location is None and fallback is None:
            raise self._error(ProtocolError, "an upload answer without Location", operation)
        url = urljoin(answer.url, location) if location else None
        offset = upload_offset(answer.headers.get("range"))
        if fallback is None:
            return UploadSession(repo, url or "", offset or 0)
        return fallback.moved(url, fallback.offset if offset is None else offset)

    async def mount_blob(self, repository: str, digest: Digest, source: str) -> bool:
        """Cross-repository mount from ``source`` on the remote. False when the remote
        would not mount (the upload session it opened instead is cancelled)."""
        repo, src = _repo(repository), _repo(source)
        answer, _ = await self._fetch(
            Call(
                "mount",
                "POST",
                f"/v2/{repo}/blobs/uploads/",
                (*_push(repo), *_pull(src)),
                (("mount", str(digest)), ("from", src)),
                body=b"",
                expect=(201, 202),
            ),
            64 * 1024,
        )
        if answer.status == 201:
            return True
        if answer.headers.get("location"):
            await self.cancel_upload(self._session_from(answer, repo, None, "mount"))
        return False

    async def start_upload(self, repository: str) -> UploadSession:
        repo = _repo(repository)
        answer, _ = await self._fetch(
            Call(
                "upload_start",
                "POST",
                f"/v2/{repo}/blobs/uploads/",
                _push(repo),
                body=b"",
                expect=(202,),
            ),
            64 * 1024,
        )
        return self._session_from(answer, repo, None, "upload_start")

    async def upload_status(self, session: UploadSession) -> UploadSession:
        """Where the remote stands: the session with the offset it acknowledges."""
        answer, _ = await self._fetch(
            Call(
                "upload_status",
                "GET",
                session.location,
                _push(session.repository),
                expect=(200, 204),
            ),
            64 * 1024,
        )
        offset = upload_offset(answer.headers.get("range"))
        return self._session_from(answer, session.repository, session, "upload_status").moved(
            None, 0 if offset is None else offset
        )

    async def upload_chunk(
        self, session: UploadSession, data: bytes | AsyncIterable[bytes], length: int
    ) -> UploadSession:
        """PATCH ``length`` bytes at the session's offset; returns the moved session."""
        if length <= 0:
            return session
        answer, _ = await self._fetch(
            Call(
                "upload_chunk",
                "PATCH",
                session.location,
                _push(session.repository),
                headers=(
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Range", f"{session.offset}-{session.offset + length - 1}"),
                ),
                body=data,
                body_length=length,
                expect=(202, 204),
            ),
            64 * 1024,
        )
        moved = self._session_from(answer, session.repository, session, "upload_chunk")
        if upload_offset(answer.headers.get("range")) is None:
            moved = moved.moved(None, session.offset + length)
        if moved.offset != session.offset + length:
            raise self._error(
                ProtocolError,
                f"sent bytes up to {session.offset + length}, the remote has {moved.offset}",
                "upload_chunk",
            )
        return moved

    async def finish_upload(
        self,
        session: UploadSession,
        digest: Digest,
        data: bytes | AsyncIterable[bytes] | None = None,
        length: int = 0,
    ) -> None:
        """PUT ``?digest=`` (with the last bytes, if any): the remote verifies and commits."""
        body: bytes | AsyncIterable[bytes] = b"" if data is None else data
        headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/octet-stream"),)
        if length:
            headers += (("Content-Range", f"{session.offset}-{session.offset + length - 1}"),)
        answer, _ = await self._fetch(
            Call(
                "upload_finish",
                "PUT",
                session.location,
                _push(session.repository),
                (("digest", str(digest)),),
                headers,
                body,
                body_length=length if data is not None else 0,
                expect=(201, 204),
            ),
            64 * 1024,
        )
        claimed = try_digest(answer.headers.get("docker-content-digest"))
        if claimed is not None and claimed.algorithm == digest.algorithm and claimed != digest:
            raise self._error(
                VerificationError,
                f"the remote stored {claimed}, we sent {digest}",
                "upload_finish",
            )

    async def cancel_upload(self, session: UploadSession) -> None:
        with contextlib.suppress(NotFound):
            await self._fetch(
                Call(
                    "upload_cancel",
                    "DELETE",
                    session.location,
                    _push(session.repository),
                    expect=(200, 202, 204),
                ),
                64 * 1024,
            )

    async def push_blob(
        self, repository: str, digest: Digest, data: bytes | AsyncIterable[bytes], size: int
    ) -> None:
        """Monolithic push: one session, one PUT with the whole body."""
        session = await self.start_upload(repository)
        await self.finish_upload(session, digest, data, size)

    async def _resumed(self, session: UploadSession) -> UploadSession:
        """The session where the remote stands, or a new one when the remote dropped it:
        distribution 2.8 cancels a session whose data moved past the offset in its
        Location's state, which a PATCH cut mid-body does; the push then starts over."""
        try:
            return await self.upload_status(session)
        except NotFound:
            log.info(
                "%s: upload session of %s is gone; starting over", self.name, session.repository
            )
            return await self.start_upload(session.repository)

    async def push_blob_chunked(
        self,
        repository: str,
        digest: Digest,
        size: int,
        source: BlobSource,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        session: UploadSession | None = None,
        on_progress: ProgressHook | None = None,
        retries: int = 3,
        retry_delay: float = 1.0,
    ) -> None:
        """Push in PATCHes of ``chunk_size``, resuming after an interruption from the
        offset the remote acknowledges (at most ``retries`` times in a row).

        ``source(offset)`` yields the blob from ``offset`` to its end. Pass ``session``
        (as persisted from ``on_progress``, which runs after each acknowledged chunk) to
        go on with an upload another process started: the remote is asked where it
        stands first."""
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        if session is None:
            session = await self.start_upload(repository)
        else:
            session = await self._resumed(session)
        await _call(on_progress, session)
        failures = 0
        while True:
            reader = SourceReader(source(session.offset))
            try:
                while session.offset < size:
                    length = min(chunk_size, size - session.offset)
                    session = await self.upload_chunk(session, reader.take(length), length)
                    failures = 0
                    await _call(on_progress, session)
                await self.finish_upload(session, digest)
                return
            except (Unavailable, Unauthorized, ProtocolError) as exc:
                # Unauthorized: a token went stale under a body that cannot be resent.
                # ProtocolError: a 416 or an offset the remote disagrees with.
                if isinstance(exc, ProtocolError) and exc.status not in (None, 416):
                    raise
                failures += 1
                if failures > retries:
                    raise
                log.info(
                    "%s: upload of %s interrupted at %d: %s", self.name, digest, session.offset, exc
                )
                await asyncio.sleep(retry_delay * failures)
                session = await self._resumed(session)
                await _call(on_progress, session)
            finally:
                await reader.aclose()


def _descriptors(doc: dict[str, Any]) -> list[dict[str, Any]]:
    manifests = doc.get("manifests")
    if not isinstance(manifests, list):
        return []
    return [d for d in manifests if isinstance(d, dict) and isinstance(d.get("digest"), str)]


async def _call(hook: ProgressHook | None, session: UploadSession) -> None:
    if hook is None:
        return
    result = hook(session)
    if result is not None:
        await result
