"""The web UI at ``/ui/``: browse, inspect and clean up the registry in a browser, with
the registry's own users and roles (docs/ui.md). Server-rendered HTML (Jinja2), a
little JavaScript that nothing depends on for reading, every asset served from here.

A worker loads the UI on the first request to one of its paths: Jinja2, the templates
and the routes are 2.6 MiB in every worker, which a registry that nobody browses would
hold for nothing."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from starlette.datastructures import URLPath
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from registry.config import Config
from registry.store import RegistryStore


def install_ui(app: FastAPI, config: Config, store: RegistryStore) -> None:
    """Serve the UI from ``app`` (call only with ``ui.enabled``). When each repository
    was last pushed is recorded by every process that writes (registry/listeners.py)."""
    app.router.routes.append(_UiOnFirstRequest(app, config, store))


def load_ui(app: FastAPI) -> None:
    """Put the UI's routes in place now, as its first page does (for what lists the
    app's routes); nothing if they are."""
    routes = app.router.routes
    for at, route in enumerate(routes):
        if isinstance(route, _UiOnFirstRequest):
            route.load(at)
            return


def _is_ui_path(path: str) -> bool:
    return path in ("/", "/ui") or path.startswith("/ui/")


class _UiOnFirstRequest(BaseRoute):
    """Stands where the UI's routes go until a request reaches one of its paths; then
    the UI is loaded, its routes replace this one, and the request is routed again."""

    def __init__(self, app: FastAPI, config: Config, store: RegistryStore) -> None:
        self._app = app
        self._config = config
        self._store = store
        self._lock = asyncio.Lock()

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and _is_ui_path(scope["path"]):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: object) -> URLPath:
        raise NoMatchFound(name, path_params)  # no route is named before the UI loads

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with self._lock:  # a request that waited finds the UI's routes in place
            load_ui(self._app)
        await self._app.router(scope, receive, send)

    def load(self, at: int) -> None:
        """The UI's state and routes, the routes put at ``at`` (this route's place)."""
        from registry.ui.contents import Contents
        from registry.ui.render import Renderer
        from registry.ui.routes import UiState, router
        from registry.ui.sessions import SessionCodec

        app, config, store = self._app, self._config, self._store
        app.state.ui = UiState(
            Renderer(),
            SessionCodec(store.session_keys, store.clock, config.ui.session_lifetime),
            Contents(store),
        )
        routes = app.router.routes
        before = len(routes)
        app.include_router(router)  # appended: moved into this route's place
        added = routes[before:]
        del routes[before:]
        routes[at : at + 1] = added
