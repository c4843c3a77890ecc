"""``/v2/<name>/blobs/<digest>``: pull (with Range) and delete blobs."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from registry import events
from registry.proxy.handlers import proxied_blob
from registry.reference import parse_digest, parse_range
from registry.routes.params import check_delete_enabled, repository, store_of
from registry.zerocopy import DirectSendResponse, offers_zero_copy

router = APIRouter()


@router.api_route("/v2/{name:path}/blobs/{digest}", methods=["GET", "HEAD"])
async def get_blob(request: Request, name: str, digest: str) -> Response:
    name, d = repository(name), parse_digest(digest)
    proxied = await proxied_blob(request, name, d)
    if proxied is not None:
        return proxied
    store = store_of(request)
    info = await store.blobs.stat(name, d)
    headers = {
        "Docker-Content-Digest": str(d),
        "ETag": f'"{d}"',
        "Accept-Ranges": "bytes",
        "Cache-Control": "max-age=31536000",
    }
    await events.blob_pulled(request, name, str(d), info.size)
    if request.method == "GET":
        url = await store.blobs.redirect_url(d)
        if url is not None:
            return RedirectResponse(url, status_code=307, headers=headers)
    start, length, status = 0, info.size, 200
    range_header = request.headers.get("range")
    if range_header:
        byte_range = parse_range(range_header, info.size)
        if byte_range is not None:
            start, length, status = byte_range.start, byte_range.length, 206
            headers["Content-Range"] = f"bytes {byte_range.start}-{byte_range.end}/{info.size}"
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type="application/octet-stream")
    if offers_zero_copy(request.scope):
        direct = await store.blobs.open_direct(name, d, start, length)
        if direct is not None:
            return DirectSendResponse(
                direct, status, headers, media_type="application/octet-stream"
            )
    return StreamingResponse(
        await store.blobs.stream(name, d, start, length),
        status_code=status,
        headers=headers,
        media_type="application/octet-stream",
    )


@router.delete("/v2/{name:path}/blobs/{digest}")
async def delete_blob(request: Request, name: str, digest: str) -> Response:
    check_delete_enabled(request)
    name, d = repository(name), parse_digest(digest)
    await store_of(request).blobs.unlink(name, d)
    return Response(status_code=202, headers={"Content-Length": "0"})
