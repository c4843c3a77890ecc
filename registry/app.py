"""create_app(config): wires the driver, the store, the routes and the error handlers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from registry import errors
from registry.config import Config, load_config
from registry.errors import RegistryError, error_response
from registry.request_log import RequestLogMiddleware, setup_logging
from registry.routes import base, blobs, catalog, manifests, referrers, tags, uploads
from registry.store import RegistryStore
from storage_backends import InvalidPathError, StorageError
from storage_backends.factory import open_driver

log = logging.getLogger("registry")


def create_app(config: Config) -> FastAPI:
    setup_logging(config.log.level, config.log.format)
    driver = open_driver(config.storage)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await driver.close()

    app = FastAPI(
        title="registry", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.config = config
    app.state.store = RegistryStore(driver)

    # Order matters: the catalog before the catch-all name patterns, and upload
    # sessions before blobs/<digest>.
    for module in (base, catalog, uploads, blobs, manifests, tags, referrers):
        app.include_router(module.router)

    @app.exception_handler(RegistryError)
    async def registry_error(request: Request, exc: RegistryError) -> Response:
        return error_response(exc, head=request.method == "HEAD")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        code = errors.UNSUPPORTED
        message = "unknown endpoint" if exc.status_code == 404 else "method not allowed"
        return error_response(
            RegistryError(code, message, status=exc.status_code), head=request.method == "HEAD"
        )

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
        log.error("storage error on %s %s: %s", request.method, request.url.path, exc)
        return error_response(
            RegistryError(errors.UNAVAILABLE, "storage backend error"),
            head=request.method == "HEAD",
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(RegistryError(errors.UNKNOWN), head=request.method == "HEAD")

    app.add_middleware(RequestLogMiddleware, enabled=config.log.access_log)
    return app


def app_from_environment() -> FastAPI:
    """The uvicorn factory used by ``registry serve``: config file and REGISTRY_* env."""
    import os

    return create_app(load_config(os.environ.get("REGISTRY_CONFIG_FILE") or None))
