"""A fault-injecting HTTP/1.1 proxy for tests: it sits in front of an upstream registry
and forwards every request, except where a ``Fault`` says to break it.

It keeps the client's ``Host`` header, so the upstream builds its URLs (upload Locations,
the token realm of this registry) with the proxy's address and the traffic that follows
them comes back through the proxy to be counted. One request per connection
(``Connection: close``), which keeps the framing simple and a cut connection a real one.

    proxy = FaultProxy(upstream.url).start()
    proxy.fault(method="GET", path="/blobs/", cut_after=1000)   # once
    proxy.fault(path="/manifests/", status=429, retry_after="7", times=None)
    proxy.count("GET", "/blobs/")                               # requests forwarded
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.server import free_port

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


@dataclass
class Fault:
    method: str | None = None  # None: any method
    path: str = ""  # a regular expression searched in the request path
    times: int | None = 1  # how many matching requests it breaks; None: all of them
    skip: int = 0  # matching requests to let through before the first one it breaks
    status: int | None = None  # answer this (with an OCI error body) instead of forwarding
    retry_after: str | None = None  # with ``status``
    delay_headers: float = 0.0  # wait this long before the response headers
    cut_after: int | None = None  # close the connection after this many body bytes
    rate: float | None = None  # relay the response body at most this many bytes a second
    truncate: int | None = None  # drop this many bytes from the end, Content-Length to match
    pad: bytes = b""  # append these bytes, Content-Length to match
    corrupt: bool = False  # flip one byte in the middle of the body
    cut_request_after: int | None = None  # forward this much request body, then drop both
    redirect_to: str | None = None  # answer 307 to this origin with the same path and query
    headers: dict[str, str] = field(default_factory=dict)  # added to the response
    strip_request: tuple[str, ...] = ()  # request headers not forwarded (e.g. "range")

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and bool(re.search(self.path, path))


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str] = field(default_factory=dict)  # lowercase names


class _CutRequest(Exception):
    pass


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        *,
        add_headers: dict[str, str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.add_headers = dict(add_headers or {})
        self.host_name = host  # the name in ``url``: "localhost" makes another origin
        self.port = free_port()
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.counts: Counter[tuple[str, str]] = Counter()  # forwarded, by (method, path)
        self.request_bytes: Counter[str] = Counter()  # body bytes forwarded, by method
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._http: httpx.AsyncClient | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host_name}:{self.port}"

    @property
    def host(self) -> str:
        return f"{self.host_name}:{self.port}"

    # ------------------------------------------------------------------ control

    def start(self) -> FaultProxy:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), loop).result(10)
        return self

    async def _start(self) -> None:
        self._http = httpx.AsyncClient(timeout=120.0, follow_redirects=False, trust_env=False)
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()
        self._loop = None

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()

    def fault(self, **kwargs: Any) -> Fault:
        f = Fault(**kwargs)
        with self._lock:
            self.faults.append(f)
        return f

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.seen.clear()
            self.counts.clear()
            self.request_bytes.clear()

    def count(self, method: str | None = None, path: str = "") -> int:
        """Requests forwarded upstream whose method is ``method`` (any if None) and whose
        path matches the regular expression ``path``."""
        with self._lock:
            return sum(
                n
                for (m, p), n in self.counts.items()
                if (method is None or m == method) and re.search(path, p)
            )

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.matches(method, path) and (f.times is None or f.times > 0):
                    if f.skip > 0:
                        f.skip -= 1
                        continue
                    if f.times is not None:
                        f.times -= 1
                    return f
        return None

    # ------------------------------------------------------------------ serving

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, _CutRequest, httpx.HTTPError):
            pass  # the client sees its connection close
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers.append((k.strip(), v.strip()))
        lower = {k.lower(): v for k, v in headers}
        parts = urlsplit(target)
        with self._lock:
            self.seen.append(Seen(method, parts.path, parts.query, lower))
        fault = self._take_fault(method, parts.path)
        body = self._request_body(reader, lower, method, fault)

        if fault is not None and (fault.status is not None or fault.redirect_to is not None):
            async for _ in body:
                pass
            if fault.delay_headers:
                await asyncio.sleep(fault.delay_headers)
            if fault.redirect_to is not None:
                location = fault.redirect_to.rstrip("/") + target
                await self._write_head(writer, 307, [("Location", location)], 0)
                return
            assert fault.status is not None
            error = json.dumps(
                {"errors": [{"code": _code(fault.status), "message": "injected by the proxy"}]}
            ).encode()
            extra = [("Content-Type", "application/json"), *fault.headers.items()]
            if fault.retry_after is not None:
                extra.append(("Retry-After", fault.retry_after))
            await self._write_head(writer, fault.status, extra, len(error))
            if method != "HEAD":
                writer.write(error)
                await writer.drain()
            return

        forward = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]
        stripped = {"content-length", *(h.lower() for h in (fault.strip_request if fault else ()))}
        forward = [(k, v) for k, v in forward if k.lower() not in stripped]
        for k, v in self.add_headers.items():
            forward = [(hk, hv) for hk, hv in forward if hk.lower() != k.lower()]
            forward.append((k, v))
        length = lower.get("content-length")
        if length is not None:
            forward.append(("Content-Length", length))
        assert self._http is not None
        has_body = length not in (None, "0") or "chunked" in lower.get("transfer-encoding", "")
        request = self._http.build_request(
            method, self.upstream + target, headers=forward, content=body if has_body else None
        )
        response = await self._http.send(request, stream=True)
        with self._lock:
            self.counts[(method, parts.path)] += 1
        try:
            await self._relay(writer, method, response, fault)
        finally:
            await response.aclose()

    async def _request_body(
        self,
        reader: asyncio.StreamReader,
        headers: dict[str, str],
        method: str,
        fault: Fault | None,
    ) -> Any:
        limit = fault.cut_request_after if fault is not None else None
        sent = 0

        async def pieces() -> Any:
            if "chunked" in headers.get("transfer-encoding", "").lower():
                while True:
                    size_line = await reader.readuntil(b"\r\n")
                    size = int(size_line.split(b";")[0].strip(), 16)
                    if size == 0:
                        await reader.readuntil(b"\r\n")
                        return
                    data = await reader.readexactly(size)
                    await reader.readexactly(2)
                    yield data
            else:
                remaining = int(headers.get("content-length", "0") or 0)
                while remaining > 0:
                    data = await reader.read(min(remaining, 256 * 1024))
                    if not data:
                        raise asyncio.IncompleteReadError(b"", remaining)
                    remaining -= len(data)
                    yield data

        async for data in pieces():
            if limit is not None and sent + len(data) >= limit:
                data = data[: limit - sent]
                if data:
                    with self._lock:
                        self.request_bytes[method] += len(data)
                    yield data
                # Let the upstream take in what it has been given, then drop everything.
                await asyncio.sleep(0.2)
                raise _CutRequest()
            sent += len(data)
            with self._lock:
                self.request_bytes[method] += len(data)
            yield data

    async def _write_head(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        headers: list[tuple[str, str]],
        length: int | None,
    ) -> None:
        lines = [f"HTTP/1.1 {status} {_reason(status)}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if length is not None:
            lines.append(f"Content-Length: {length}")
        lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()

    async def _relay(
        self,
        writer: asyncio.StreamWriter,
        method: str,
        response: httpx.Response,
        fault: Fault | None,
    ) -> None:
        headers = [
            (k, v)
            for k, v in response.headers.multi_items()
            if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"
        ]
        declared = response.headers.get("content-length")
        if fault is not None:
            headers += list(fault.headers.items())
        if fault is not None and fault.delay_headers:
            await asyncio.sleep(fault.delay_headers)
        if method == "HEAD" or response.status_code in (204, 304):
            await self._write_head(
                writer, response.status_code, headers, int(declared) if declared else None
            )
            return
        rewrites = fault is not None and (fault.truncate or fault.pad or fault.corrupt)
        if rewrites:
            assert fault is not None
            body = bytearray(await response.aread())
            if fault.truncate:
                del body[len(body) - fault.truncate :]
            body += fault.pad
            if fault.corrupt and body:
                body[len(body) // 2] ^= 0xFF
            await self._write_head(writer, response.status_code, headers, len(body))
            writer.write(bytes(body))
            await writer.drain()
            return
        await self._write_head(
            writer, response.status_code, headers, int(declared) if declared else None
        )
        budget = fault.cut_after if fault is not None else None
        rate = fault.rate if fault is not None else None
        async for chunk in response.aiter_raw(64 * 1024 if rate else None):
            if budget is not None:
                chunk = chunk[:budget]
                budget -= len(chunk)
            writer.write(chunk)
            await writer.drain()
            if rate:
                await asyncio.sleep(len(chunk) / rate)
            if budget == 0:
                transport = writer.transport
                transport.abort()  # a cut connection, not a clean close
                return


def _reason(status: int) -> str:
    try:
        from http import HTTPStatus

        return HTTPStatus(status).phrase
    except ValueError:
        return "Status"


def _code(status: int) -> str:
    return {429: "TOOMANYREQUESTS", 503: "UNAVAILABLE", 401: "UNAUTHORIZED", 403: "DENIED"}.get(
        status, "UNKNOWN"
    )
