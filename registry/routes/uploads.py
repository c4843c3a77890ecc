"""``/v2/<name>/blobs/uploads/``: monolithic, chunked and mounted blob pushes."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from registry import errors
from registry.auth import may_pull
from registry.errors import RegistryError
from registry.policy import quota_guard
from registry.reference import Digest, check_name, parse_content_range, parse_digest
from registry.routes.params import config_of, repository, store_of
from registry.store import BlobBusyError, RegistryStore, UploadOffsetError, UploadState

router = APIRouter()
# Seconds a push racing the garbage collector is told to wait before it retries.
BUSY_RETRY_AFTER = "5"


def progress_headers(name: str, upload_id: str, size: int) -> dict[str, str]:
    """Location, Range (inclusive end of what is stored) and the session id."""
    return {
        "Location": f"/v2/{name}/blobs/uploads/{upload_id}",
        "Range": f"0-{max(size - 1, 0)}",
        "Docker-Upload-UUID": upload_id,
    }


def _blob_created(name: str, digest: Digest) -> Response:
    return Response(
        status_code=201,
        headers={
            "Location": f"/v2/{name}/blobs/{digest}",
            "Docker-Content-Digest": str(digest),
            "Content-Length": "0",
        },
    )


def _progress(name: str, upload_id: str, size: int, status: int) -> Response:
    headers = progress_headers(name, upload_id, size)
    headers["Content-Length"] = "0"
    return Response(status_code=status, headers=headers)


def _chunk_start(request: Request) -> int | None:
    """Where a chunk claims to start (``Content-Range``), if it says."""
    content_range = request.headers.get("content-range")
    return parse_content_range(content_range).start if content_range else None


def _declared_length(request: Request) -> int | None:
    """How many bytes the body brings, if the request says (Content-Length)."""
    length = request.headers.get("content-length", "").strip()
    return int(length) if length.isdigit() else None


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() != "0"
    return "chunked" in request.headers.get("transfer-encoding", "").lower()


def _digest_param(request: Request) -> Digest:
    raw = request.query_params.get("digest")
    if not raw:
        raise RegistryError(errors.DIGEST_INVALID, "the digest query parameter is required")
    return parse_digest(raw)


async def _append(
    store: RegistryStore, name: str, state: UploadState, request: Request, *, last: bool = False
) -> int:
    """Append the request body where its Content-Range says it starts; a chunk that does
    not start where the session ends gets 416 with the session's progress. ``last``: the
    blob is committed next (its reservation ends there)."""
    settled = False
    try:
        body = await _quota_limited(request, store, name, state)
        size = await store.uploads.append(
            name, state, body, _chunk_start(request), length=_declared_length(request)
        )
        settled = last
        return size
    except UploadOffsetError as exc:
        raise RegistryError(
            errors.BLOB_UPLOAD_RANGE_INVALID,
            str(exc),
            headers=progress_headers(name, exc.upload_id, exc.size),
        ) from None
    finally:
        if not settled:
            await _quota_settle(request, store, name, state)


# ---- Quota hook points (registry/policy/quotas.py): bytes are reserved before they are
# stored, and a session's reservation ends with the session. Nothing here without quotas.


async def _quota_limited(
    request: Request, store: RegistryStore, name: str, state: UploadState
) -> AsyncIterator[bytes]:
    """The request body, its bytes reserved against the quotas before they pass."""
    guard = quota_guard(request)
    if guard is None:
        return request.stream()
    stored = await store.uploads.size(name, state)
    return guard.limit(name, state.upload_id, request.stream(), stored, _declared_length(request))


async def _quota_settle(
    request: Request, store: RegistryStore, name: str, state: UploadState
) -> None:
    """After a request of the session: it holds what it stores now."""
    guard = quota_guard(request)
    if guard is not None:
        stored = await store.uploads.size(name, state)
        await guard.settle_session(name, state.upload_id, stored)


async def _quota_commit(
    request: Request,
    store: RegistryStore,
    name: str,
    state: UploadState,
    digest: Digest,
    *,
    reserved: bool,
) -> None:
    """Commit with the session's reservation covering the blob (``reserved``: this
    request just made it), then end it."""
    guard = quota_guard(request)
    if guard is None:
        await _commit(store, name, state, digest)
        return
    try:
        if not reserved:
            stored = await store.uploads.size(name, state)
            await guard.ensure_session(name, state.upload_id, stored)
        with guard.covering(state.upload_id):
            await _commit(store, name, state, digest)
    finally:
        await guard.release(name, state.upload_id)


async def _quota_end(request: Request, name: str, upload_id: str) -> None:
    """The session is gone: so is its reservation."""
    guard = quota_guard(request)
    if guard is not None:
        await guard.release(name, upload_id)


async def _quota_room(request: Request, name: str) -> None:
    """A new session is refused at once when a quota of ``name`` is full."""
    guard = quota_guard(request)
    if guard is not None:
        await guard.check_room(name)


# ---- end of the quota hook points


def _busy(digest: Digest) -> RegistryError:
    return RegistryError(
        errors.UNAVAILABLE,
        f"{digest} is being garbage-collected; retry",
        headers={"Retry-After": BUSY_RETRY_AFTER},
    )


async def _commit(store: RegistryStore, name: str, state: UploadState, digest: Digest) -> None:
    try:
        await store.uploads.commit(name, state, digest)
    except BlobBusyError:
        raise _busy(digest) from None


@router.post("/v2/{name:path}/blobs/uploads/")
@router.post("/v2/{name:path}/blobs/uploads", include_in_schema=False)
async def start_upload(request: Request, name: str) -> Response:
    name = repository(name)
    store = store_of(request)
    params = request.query_params
    mount, source = params.get("mount"), params.get("from")
    if mount and source:
        digest = parse_digest(mount)
        source_name = check_name(source)
        # Mounting needs pull on the source. Without it this is an ordinary upload (202),
        # so the answer tells nothing about what the source holds.
        mounted = may_pull(request, source_name) and (
            await store.blobs.mount(name, digest, source_name) is not None
        )
        if mounted:
            return _blob_created(name, digest)
        # Not mountable: fall through to an ordinary upload session (202), as the spec says.
    if params.get("digest") is not None:
        digest = _digest_param(request)
        if quota_guard(request) is None:
            # One request, no session: a small blob is verified in memory (store/uploads.py).
            try:
                await store.uploads.push(name, digest, request.stream(), _declared_length(request))
            except BlobBusyError:
                raise _busy(digest) from None
            return _blob_created(name, digest)
        # Under a quota the bytes are reserved as they pass: through a session.
        state = await store.uploads.create(name)
        try:
            await _append(store, name, state, request, last=True)
            await _quota_commit(request, store, name, state, digest, reserved=True)
        except BaseException:
            await store.uploads.cancel(name, state.upload_id)
            await _quota_end(request, name, state.upload_id)
            raise
        return _blob_created(name, digest)
    await _quota_room(request, name)
    state = await store.uploads.create(name)
    response = _progress(name, state.upload_id, 0, 202)
    response.headers["OCI-Chunk-Min-Length"] = str(config_of(request).uploads.chunk_min_length)
    return response


@router.patch("/v2/{name:path}/blobs/uploads/{upload_id}")
async def upload_chunk(request: Request, name: str, upload_id: str) -> Response:
    name = repository(name)
    store = store_of(request)
    state = await store.uploads.get(name, upload_id)
    return _progress(name, upload_id, await _append(store, name, state, request), 202)


@router.put("/v2/{name:path}/blobs/uploads/{upload_id}")
async def finish_upload(request: Request, name: str, upload_id: str) -> Response:
    name = repository(name)
    digest = _digest_param(request)
    store = store_of(request)
    state = await store.uploads.get(name, upload_id)
    body = _has_body(request)
    if body:
        await _append(store, name, state, request, last=True)
    await _quota_commit(request, store, name, state, digest, reserved=body)
    return _blob_created(name, digest)


@router.get("/v2/{name:path}/blobs/uploads/{upload_id}")
async def upload_status(request: Request, name: str, upload_id: str) -> Response:
    name = repository(name)
    store = store_of(request)
    state = await store.uploads.get(name, upload_id)
    return _progress(name, upload_id, await store.uploads.size(name, state), 204)


@router.delete("/v2/{name:path}/blobs/uploads/{upload_id}")
async def cancel_upload(request: Request, name: str, upload_id: str) -> Response:
    name = repository(name)
    store = store_of(request)
    await store.uploads.get(name, upload_id)
    await store.uploads.cancel(name, upload_id)
    await _quota_end(request, name, upload_id)
    return Response(status_code=204)
