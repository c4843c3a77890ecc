"""The cache's side of the HTTP routes: each route asks here first, and serves as usual
when the answer is None (the repository is not cached from an upstream, or -- for blobs
-- the store holds what was asked).

An uncached blob is streamed with ``CachedBlobResponse``: when its fetch fails midway,
the response ends without its last message (an explicit abort, registry/aborts.py), so
the server cuts the connection and the client sees an incomplete body -- never a short
200. The fetch has logged why, once; the abort itself is quiet.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from registry import errors
from registry.aborts import abort
from registry.errors import RegistryError
from registry.maintenance import WRITE_METHODS
from registry.manifest import OCI_INDEX
from registry.proxy import metrics
from registry.proxy.blobs import BlobMiss
from registry.proxy.cache import PullThroughCache
from registry.proxy.failures import may_serve_stale, spec_error, stale_warning
from registry.proxy.fills import BlobSource, FillFailed
from registry.proxy.routing import Route
from registry.reference import Digest
from registry.remote import RemoteError
from registry.routes.params import next_link, page_params

log = logging.getLogger("registry.proxy")


def cache_of(request: Request) -> PullThroughCache | None:
    cache: PullThroughCache | None = getattr(request.app.state, "proxy", None)
    return cache


def _route(request: Request, name: str) -> tuple[PullThroughCache, Route] | None:
    cache = cache_of(request)
    route = cache.routes.for_name(name) if cache is not None else None
    return None if cache is None or route is None else (cache, route)


async def refuse_writes_to_caches(request: Request) -> None:
    """App-wide dependency, after authorization: pushes and deletes in a cached
    namespace are refused unless it is configured writable."""
    cache = cache_of(request)
    # The scope's path: building ``request.url`` costs more than this whole check.
    if cache is None or request.method not in WRITE_METHODS:
        return
    name = request.path_params.get("name")
    if not request.scope["path"].startswith("/v2/") or not isinstance(name, str):
        return
    upstream = cache.routes.namespace_of(name)
    if upstream is not None and not upstream.config.writable:
        raise RegistryError(
            errors.UNSUPPORTED,
            f"{name!r} is a pull-through cache of upstream {upstream.name}: "
            "pushes and deletes are refused",
        )


# ---------------------------------------------------------------------- manifests


async def proxied_manifest(request: Request, name: str, reference: str) -> Response | None:
    found = _route(request, name)
    if found is None:
        return None
    cache, route = found
    head = request.method == "HEAD"
    answer = await cache.manifests.answer(route, reference, head=head)
    etag = f'"{answer.digest}"'
    headers = {"Docker-Content-Digest": str(answer.digest), "ETag": etag}
    if answer.warning:
        headers["Warning"] = answer.warning
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    headers["Content-Length"] = str(answer.size)
    if head or answer.body is None:
        return Response(headers=headers, media_type=answer.media_type)
    return Response(answer.body, headers=headers, media_type=answer.media_type)


# ---------------------------------------------------------------------- blobs


class CachedBlobResponse(StreamingResponse):
    """A blob streamed from a fill or a forwarded range."""

    def __init__(
        self,
        miss: BlobMiss,
        headers: dict[str, str],
        upstream: str,
        digest: Digest,
        sources: list[BlobSource],
    ) -> None:
        assert miss.body is not None
        super().__init__(
            miss.body,
            status_code=miss.status,
            headers=headers,
            media_type="application/octet-stream",
        )
        self._upstream = upstream
        self._sources = sources
        self._digest = digest
        self._scope: Scope = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._scope = scope  # whether the server offers the abort
        await super().__call__(scope, receive, send)

    async def stream_response(self, send: Send) -> None:
        served = metrics.SERVED_BYTES.labels(self._upstream)
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        try:
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                served.inc(len(chunk))
        except (FillFailed, RemoteError) as exc:
            # No last message: the server closes the connection, and the client knows
            # that the body is incomplete.
            if isinstance(exc, FillFailed) and exc.reported:
                log.debug("proxy: cut a response of blob %s: %s", self._digest, exc)
            else:
                log.warning(
                    "proxy: cut a response of blob %s from upstream %s: %s",
                    self._digest,
                    self._upstream,
                    exc,
                )
            await abort(self._scope, send)
            return
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()
            for source in self._sources:
                source.close()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _blob_headers(digest: Digest) -> dict[str, str]:
    return {
        "Docker-Content-Digest": str(digest),
        "ETag": f'"{digest}"',
        "Accept-Ranges": "bytes",
        "Cache-Control": "max-age=31536000",
    }


async def proxied_blob(request: Request, name: str, digest: Digest) -> Response | None:
    """None when the store serves the blob (a hit); else the answer from upstream."""
    found = _route(request, name)
    if found is None:
        return None
    cache, route = found
    upstream = route.upstream.name
    size = await cache.blobs.stored(route, digest)
    if size is not None:
        metrics.HITS.labels(upstream, "blob").inc()
        if request.method == "GET" and "range" not in request.headers:
            metrics.SERVED_BYTES.labels(upstream).inc(size)
        return None
    if request.method == "HEAD":
        miss = await cache.blobs.head(route, digest)
        headers = _blob_headers(digest)
        if miss.length is not None:
            headers["Content-Length"] = str(miss.length)
        return Response(headers=headers, media_type="application/octet-stream")
    got = await cache.blobs.get(route, digest, request.headers.get("range"))
    if got is None:  # stored meanwhile
        if await cache.blobs.stored(route, digest) is not None:
            return None
        raise RegistryError(errors.BLOB_UNKNOWN, detail={"digest": str(digest)})
    headers = _blob_headers(digest)
    if got.length is not None:
        headers["Content-Length"] = str(got.length)
    if got.content_range is not None:
        headers["Content-Range"] = got.content_range
    return CachedBlobResponse(got, headers, upstream, digest, got.closers)


# ---------------------------------------------------------------------- referrers


async def proxied_referrers(request: Request, name: str, subject: Digest) -> Response | None:
    found = _route(request, name)
    if found is None:
        return None
    cache, route = found
    artifact_type = request.query_params.get("artifactType")
    answer = await cache.referrers.answer(route, subject, artifact_type)
    headers = {}
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    if answer.warning:
        headers["Warning"] = answer.warning
    body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": answer.descriptors}
    return Response(json.dumps(body).encode(), headers=headers, media_type=OCI_INDEX)


# ---------------------------------------------------------------------- tags


async def proxied_tags(request: Request, name: str) -> Response | None:
    """The upstream's tag list, page by page; the cached tags (with a Warning) when the
    upstream fails."""
    found = _route(request, name)
    if found is None:
        return None
    cache, route = found
    n, last = page_params(request)
    asked_n = n if request.query_params.get("n") not in (None, "") else None
    client = cache.clients.client(route.upstream)
    headers: dict[str, str] = {}
    try:
        page = await client.tags_page(route.remote, n=asked_n, last=last)
        tags, following = page.items, _next_params(page.next)
    except RemoteError as exc:
        if not may_serve_stale(exc) or not await cache.store.manifests.repository_exists(name):
            raise spec_error(exc, "tags", {"name": name}) from None
        metrics.STALE.labels(route.upstream.name).inc()
        headers["Warning"] = stale_warning(exc)
        tags = await cache.store.manifests.list_tags(name, last, n + 1) if n else []
        following = None
        if len(tags) > n:
            tags = tags[:n]
            following = {"n": str(n), "last": tags[-1]}
    if following is not None:
        headers["Link"] = next_link(f"/v2/{name}/tags/list", following)
    body: dict[str, Any] = {"name": name, "tags": tags}
    return Response(json.dumps(body).encode(), headers=headers, media_type="application/json")


def _next_params(target: str | None) -> dict[str, str] | None:
    """The ``n`` and ``last`` of the upstream's next page, for our own Link."""
    if target is None:
        return None
    query = dict(parse_qsl(urlsplit(target).query))
    params: dict[str, str] = {k: query[k] for k in ("n", "last") if k in query}
    return params or None
