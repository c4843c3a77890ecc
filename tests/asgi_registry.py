"""The registry in this process: ``create_app`` over a memory driver, spoken to through
``httpx.ASGITransport``, for the tests that need no real HTTP server.

The app and its lifespan (the background collector, the driver's close) run on an event
loop in a thread of their own, as they would under uvicorn; ``client()`` is a plain
synchronous ``httpx.Client`` whose requests are handed to that loop, so that one test body
runs against this and against a real ``registry serve`` process alike.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterable
from typing import Any, TypeVar
from urllib.parse import unquote

import httpx
from fastapi import FastAPI

from registry.app import create_app
from registry.config import Config
from storage_backends import Driver
from storage_backends.memory import MemoryDriver

T = TypeVar("T")

BASE_URL = "http://registry.test"
CLIENT = ("127.0.0.1", 50000)


class InProcessRegistry:
    """One app over ``driver`` (a fresh MemoryDriver unless given), started and stopped
    with its ASGI lifespan. Use as a context manager, or ``start()`` and ``stop()``."""

    def __init__(self, config: dict[str, Any] | None = None, driver: Driver | None = None):
        self.config = Config.model_validate(config or {})
        self.driver = MemoryDriver() if driver is None else driver
        self.app: FastAPI = create_app(self.config, driver=self.driver)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="in-process-registry", daemon=True
        )
        self._lifespan = _Lifespan(self.app)

    def start(self) -> None:
        self._thread.start()
        self.run(self._lifespan.startup())

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self.run(self._lifespan.shutdown())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> InProcessRegistry:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the app's loop and wait for it (e.g. a driver call)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(transport=_LoopTransport(self), base_url=BASE_URL, **kwargs)

    def raw_request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """Send ``path`` exactly as given (httpx would resolve ``..``), decoded into the
        ASGI scope as uvicorn decodes a request line. Returns the status and the body."""
        raw_path, _, query = path.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": unquote(raw_path),
            "raw_path": raw_path.encode(),
            "query_string": query.encode(),
            "headers": [(b"host", b"registry.test"), (b"content-length", b"%d" % len(body))],
            "server": ("registry.test", 80),
            "client": CLIENT,
            "root_path": "",
        }
        return self.run(_call(self.app, scope, body))

    def stored_files(self) -> list[str]:
        """Every path the driver holds, unfinished writers' included."""
        if isinstance(self.driver, MemoryDriver):
            store = self.driver.store
            return sorted({*store.files, *store.unfinished})
        return self.run(self.driver.list("", recursive=True))


class _LoopTransport(httpx.BaseTransport):
    """Hands each request of a synchronous client to ASGITransport on the app's loop."""

    def __init__(self, registry: InProcessRegistry) -> None:
        self._registry = registry
        self._asgi = httpx.ASGITransport(app=registry.app, client=CLIENT)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.stream
        assert isinstance(body, Iterable)

        async def send() -> httpx.Response:
            forwarded = httpx.Request(
                request.method, request.url, headers=request.headers, stream=_AsyncBody(body)
            )
            response = await self._asgi.handle_async_request(forwarded)
            content = await response.aread()
            return httpx.Response(
                response.status_code,
                headers=response.headers,
                stream=httpx.ByteStream(content),
                request=request,
            )

        return self._registry.run(send())


class _AsyncBody(httpx.AsyncByteStream):
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:  # a generator's pieces arrive as separate chunks
            yield chunk


class _Lifespan:
    """The ASGI lifespan protocol, as uvicorn speaks it (ASGITransport does not)."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}

        async def receive() -> dict[str, Any]:
            return await self._received.get()

        async def send(message: dict[str, Any]) -> None:
            await self._sent.put(message)

        self._task = asyncio.create_task(self._app(scope, receive, send))
        await self._exchange("lifespan.startup")

    async def shutdown(self) -> None:
        await self._exchange("lifespan.shutdown")
        assert self._task is not None
        await self._task

    async def _exchange(self, event: str) -> None:
        assert self._task is not None
        await self._received.put({"type": event})
        answer = asyncio.ensure_future(self._sent.get())
        await asyncio.wait({answer, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not answer.done():
            answer.cancel()
            self._task.result()  # the app's exception, if it raised one
            raise RuntimeError(f"the app ended its lifespan without answering {event}")
        message = answer.result()
        if message["type"] != f"{event}.complete":
            raise RuntimeError(f"{event}: {message}")


async def _call(app: FastAPI, scope: dict[str, Any], body: bytes) -> tuple[int, bytes]:
    """One request straight to the app: its status and body."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0
    parts: list[bytes] = []
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    await app(scope, receive, send)
    return status, b"".join(parts)
