"""Mirror clients mapped onto the local namespaces before routing (``routing.py`` has the
rules): containerd's and CRI-O's ``?ns=<upstream host>``, and Docker's
``registry-mirrors``, which sends Docker Hub names bare (``/v2/library/alpine/...``) to
the upstream marked ``default`` unless the name is stored here.

An ASGI middleware, inside the others: the request log and the metrics see the request
as the client sent it, routing, authorization and the routes see the local name, so a
grant on ``dockerhub/**`` is what lets a caller pull through ``ns=docker.io``. An
``ns`` that no upstream is configured for is answered 404 here, before anything else
happens (containerd then tries its next host).
"""

from __future__ import annotations

from urllib.parse import quote

from registry.errors import error_response
from registry.proxy.routing import Routes
from registry.request_log import ASGIApp, Receive, Scope, Send
from registry.store import RegistryStore


class MirrorRouting:
    def __init__(self, app: ASGIApp, routes: Routes, store: RegistryStore) -> None:
        self.app = app
        self.routes = routes
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.routes:
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        rewrite = self.routes.rewrite(method, path, query)
        if rewrite.refusal is not None:
            response = error_response(rewrite.refusal, head=method == "HEAD")
            await response(scope, receive, send)
            return
        target = rewrite.path
        if target is None:
            name = self.routes.default_candidate(method, path)
            if name is not None and not await self.store.catalog.contains(name):
                target = self.routes.default_path(path)
        if target is not None:
            scope = dict(scope, path=target, raw_path=quote(target).encode("ascii"))
        await self.app(scope, receive, send)
