"""The registry in this process: ``create_app`` over a memory driver, spoken to through
``httpx.ASGITransport``, for the tests that need no real HTTP server.

The app and its lifespan (the background collector, the driver's close) run on an event
loop in a thread of their own, as they would under uvicorn; ``client()`` is a plain
synchronous ``httpx.Client`` whose requests are handed to that loop, so that one test body
runs against this and against a real ``registry serve`` process alike. A request body
given as an iterator is read in a worker thread, chunk by chunk, so that it may block
(a client stalling mid-upload) without stopping the app. ``log()`` is what the registry
logged, formatted as its configuration says, as a server's log file would hold it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import unquote

import httpx
from fastapi import FastAPI

from registry.app import create_app
from registry.config import Config
from registry.request_log import JsonFormatter, TextFormatter
from storage_backends import Driver
from storage_backends.memory import MemoryDriver

T = TypeVar("T")

HOST = "registry.test"
BASE_URL = f"http://{HOST}"
CLIENT = ("127.0.0.1", 50000)
_numbers = itertools.count(1)


class InProcessRegistry:
    """One app over ``driver`` (a fresh MemoryDriver unless given), started and stopped
    with its ASGI lifespan. Use as a context manager, or ``start()`` and ``stop()``."""

    url = BASE_URL
    host = HOST

    def __init__(self, config: dict[str, Any] | None = None, driver: Driver | None = None):
        self.config = Config.model_validate(config or {})
        self.driver = MemoryDriver() if driver is None else driver
        self.app: FastAPI = create_app(self.config, driver=self.driver)
        self.name = f"in-process-registry-{next(_numbers)}"
        self._records = _LogRouter.attach(self.name)
        self._formatter = JsonFormatter() if self.config.log.format == "json" else TextFormatter()
        self._loop = asyncio.new_event_loop()
        # The app's own worker threads carry its name too, so that what they log is its.
        self._loop.set_default_executor(ThreadPoolExecutor(thread_name_prefix=self.name))
        self._thread = threading.Thread(target=self._loop.run_forever, name=self.name, daemon=True)
        self._lifespan = _Lifespan(self.app)

    def start(self) -> None:
        _LogRouter.attach(self.name, self._records)  # another app's set-up may have reset it
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
            _LogRouter.detach(self.name)

    def __enter__(self) -> InProcessRegistry:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the app's loop and wait for it (e.g. a driver call)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def client(self, address: str = CLIENT[0], **kwargs: Any) -> httpx.Client:
        """A client of the app; its requests come from ``address`` (what uvicorn takes
        from X-Forwarded-For behind a trusted proxy)."""
        transport = _LoopTransport(self, (address, CLIENT[1]))
        return httpx.Client(transport=transport, base_url=BASE_URL, **kwargs)

    def log(self) -> str:
        """Every record the registry logged so far, one formatted record a line."""
        return "".join(self._formatter.format(r) + "\n" for r in list(self._records))

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


class _LogRouter(logging.Handler):
    """Hands each record of the ``registry`` loggers to the in-process registry whose
    threads logged it (several may run at once; each thread is named for its registry).
    ``create_app`` resets the ``registry`` logger's handlers, so each registry attaches
    the router again once its app is made."""

    _instance: _LogRouter | None = None

    def __init__(self) -> None:
        super().__init__()
        self.buffers: dict[str, list[logging.LogRecord]] = {}

    @classmethod
    def attach(
        cls, name: str, buffer: list[logging.LogRecord] | None = None
    ) -> list[logging.LogRecord]:
        if cls._instance is None:
            cls._instance = cls()
        router = cls._instance
        logger = logging.getLogger("registry")
        if router not in logger.handlers:
            logger.addHandler(router)
        return router.buffers.setdefault(name, [] if buffer is None else buffer)

    @classmethod
    def detach(cls, name: str) -> None:
        if cls._instance is not None:
            cls._instance.buffers.pop(name, None)

    def emit(self, record: logging.LogRecord) -> None:
        owner = (record.threadName or "").split("_", 1)[0]
        buffer = self.buffers.get(owner)
        if buffer is not None:
            buffer.append(record)


class _LoopTransport(httpx.BaseTransport):
    """Hands each request of a synchronous client to ASGITransport on the app's loop."""

    def __init__(self, registry: InProcessRegistry, client: tuple[str, int]) -> None:
        self._registry = registry
        self._asgi = httpx.ASGITransport(app=registry.app, client=client)

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
        if isinstance(self._chunks, httpx.ByteStream):  # bytes given at once
            for chunk in self._chunks:
                yield chunk
            return
        # A generator's pieces arrive as separate chunks, each read in a worker thread:
        # the client's generator may block (a stalled client) while the app goes on.
        chunks = iter(self._chunks)
        while (chunk := await asyncio.to_thread(_next_chunk, chunks)) is not None:
            yield chunk


def _next_chunk(chunks: Iterator[bytes]) -> bytes | None:
    return next(chunks, None)


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
