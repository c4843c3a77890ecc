"""create_app(config): wires the driver, the store, the routes and the error handlers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from registry import errors, metrics
from registry.auth import Authorizer, authorize_request
from registry.config import Config, load_config
from registry.context import bind_request_context
from registry.errors import RegistryError, error_response
from registry.gc import background_collector
from registry.health import ReadinessCheck
from registry.listeners import install_listeners
from registry.maintenance import ReadOnlyState, refuse_writes_when_readonly
from registry.proxy import MirrorRouting, open_cache
from registry.proxy.handlers import refuse_writes_to_caches
from registry.replication.service import ReplicationService
from registry.request_log import RequestLogMiddleware, setup_logging
from registry.routes import (
    base,
    blobs,
    catalog,
    manifests,
    ops,
    referrers,
    replication,
    tags,
    uploads,
    usage,
)
from registry.routes.plain import add_routes
from registry.shutdown import InflightRequests, TrackRequests
from registry.store import open_store
from storage_backends import Driver, InvalidPathError, StorageError

log = logging.getLogger("registry")


async def before_endpoint(request: Request) -> None:
    """What runs before every endpoint, in this order. Authorization first: an anonymous
    write learns nothing about read-only mode nor about caches. Then the request's
    context, which the store's change listeners read."""
    await authorize_request(request)
    await refuse_writes_when_readonly(request)
    await refuse_writes_to_caches(request)
    await bind_request_context(request)


def create_app(
    config: Config, *, driver: Driver | None = None, config_file: str | None = None
) -> FastAPI:
    """The application; ``driver`` replaces the configured storage (tests give a
    MemoryDriver), wrapped as the configured one would be. ``config_file``: where
    ``config`` came from (replication rules are reloaded when it changes)."""
    setup_logging(config.log.level, config.log.format)
    observer = metrics.observe_storage if config.metrics.enabled else None
    store = open_store(config, driver=driver, observer=observer)
    # Immutable tags and quotas, the UI's push times, events (docs/events.md): as every
    # process that writes installs them (registry/listeners.py).
    listeners = install_listeners(store, config)
    governance, events = listeners.governance, listeners.events
    readonly = ReadOnlyState(
        store.readonly_flag, config.storage.readonly, config.storage.readonly_flag_ttl
    )

    async def pull_paused() -> bool:
        return config.storage.readonly or await readonly.flag() is not None

    # Replication (docs/replication.md): push rules read the event outbox.
    replicator = ReplicationService(
        store, config, events, config_file=config_file, paused=pull_paused
    )

    inflight = InflightRequests()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        collector = background_collector(app.state.store, config, app.state.readonly)
        if collector is not None:
            collector.start()
        upkeep = governance.background()
        if upkeep is not None:
            upkeep.start()
        events.start()
        if cache is not None:
            cache.start()
        replicator.start()
        yield
        if upkeep is not None:
            await upkeep.stop()
        if collector is not None:
            await collector.stop()
        await events.stop()  # no delivery to a rule after this
        await replicator.stop()
        if cache is not None:
            await cache.stop()
        # Requests cut off by the graceful timeout save what they hold (registry/shutdown.py).
        await inflight.drain()
        await store.close()
        metrics.process_exit()

    app = FastAPI(
        title="registry",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
        # For routes that stay FastAPI routes (registry/routes/plain.py runs it itself).
        dependencies=[Depends(before_endpoint)],
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.config = config
    app.state.store = store
    app.state.policy = governance
    app.state.events = events
    app.state.replication = replicator
    app.state.readonly = readonly
    app.state.readiness = ReadinessCheck(store.ping, config.health.storage_timeout)

    async def paused() -> bool:
        return await app.state.readonly.flag() is not None

    cache = open_cache(config, store, paused)
    app.state.proxy = cache
    authorizer = Authorizer.from_config(config.auth)  # None: auth.mode none
    app.state.authorizer = authorizer

    # The catalog before the catch-all name patterns; then the most requested first (a
    # request costs a pattern match per route tried before its own). Which route serves
    # a path is pinned by tests/unit/test_route_order.py.
    for module in (
        base,
        catalog,
        manifests,
        blobs,
        uploads,
        tags,
        referrers,
        ops,
        usage,
        replication,
    ):
        add_routes(app, module.router, before_endpoint)
    if config.metrics.enabled:
        add_routes(app, ops.metrics_router, before_endpoint)
    if authorizer is not None and authorizer.token is not None and authorizer.token.issuer:
        from registry.auth.token_service import TokenService  # token mode: JWT, X.509
        from registry.routes import token

        app.state.token_service = TokenService(authorizer)
        add_routes(app, token.router, before_endpoint)
    if config.ui.enabled:
        from registry.ui import install_ui  # Jinja2: loaded only for the UI

        install_ui(app, config, store)

    @app.exception_handler(RegistryError)
    async def registry_error(request: Request, exc: RegistryError) -> Response:
        await events.request_failed()  # what it recorded never happens (docs/events.md)
        return error_response(exc, head=request.method == "HEAD")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        # Routing's own refusals: no route (404), a route without the method (405).
        if exc.status_code == 404:
            error = RegistryError(errors.ENDPOINT_UNKNOWN)
        elif exc.status_code == 400:
            error = RegistryError(errors.REQUEST_UNSUPPORTED)
        else:
            error = RegistryError(errors.UNSUPPORTED, "method not allowed")
        return error_response(error, head=request.method == "HEAD")

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        return error_response(
            RegistryError(errors.BLOB_UPLOAD_INVALID, "client disconnected"), head=True
        )

    @app.exception_handler(InvalidPathError)
    async def invalid_path(request: Request, exc: InvalidPathError) -> Response:
        return error_response(RegistryError(errors.NAME_INVALID), head=request.method == "HEAD")

    @app.exception_handler(StorageError)
    async def storage_error(request: Request, exc: StorageError) -> Response:
        await events.request_failed()
        log.error("storage error on %s %s: %s", request.method, request.url.path, exc)
        return error_response(
            RegistryError(errors.UNAVAILABLE, "storage backend error"),
            head=request.method == "HEAD",
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        await events.request_failed()
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(RegistryError(errors.UNKNOWN), head=request.method == "HEAD")

    # The last added is the outermost. RequestLogMiddleware counts status and bytes once
    # for the log line and the metrics, so MetricsMiddleware must sit inside it; the
    # cache's mirror routing innermost, so that they see requests as clients sent them.
    if cache is not None:
        app.add_middleware(MirrorRouting, routes=cache.routes, store=store)
    if config.metrics.enabled:
        app.add_middleware(metrics.MetricsMiddleware)
    app.add_middleware(RequestLogMiddleware, enabled=config.log.access_log)
    app.add_middleware(TrackRequests, inflight=inflight)
    return app


def app_from_environment() -> FastAPI:
    """The uvicorn factory used by ``registry serve``: config file and REGISTRY_* env."""
    import os

    path = os.environ.get("REGISTRY_CONFIG_FILE") or None
    return create_app(load_config(path), config_file=path)
