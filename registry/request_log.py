"""One log line per request, a request id on every response, and the API version header.

A pure ASGI middleware (not Starlette's BaseHTTPMiddleware, which would get between
streamed bodies and the socket). Logged: method, path, status, bytes in and out,
duration, request id, client address. Never headers: they carry credentials. Query
strings are left out too (upload ``_state``-like tokens or presigned URLs could
appear there).

The path is the decoded one, so it may hold any character a client percent-encoded:
the text formatter escapes control characters in every field and message (``%0A``
must not start a line of its own), JSON escapes them by itself.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ZERO_COPY = "http.response.zerocopysend"  # registry/zerocopy.py
log = logging.getLogger("registry.access")
REQUEST_ID_HEADER = b"x-request-id"
_SAFE_ID = re.compile(rb"^[A-Za-z0-9._-]{1,128}$")
API_VERSION = (b"docker-distribution-api-version", b"registry/2.0")


@dataclass
class RequestStats:
    """What one request did, counted once here and read by the log line and the metrics
    (``scope["state"]["stats"]``; final once the inner app has returned)."""

    status: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp, enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        stats = RequestStats()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id.decode()
        state["stats"] = stats

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                stats.bytes_in += len(message.get("body", b""))
            return message

        async def tagging_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                stats.status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER, request_id))
                headers.append(API_VERSION)
                message["headers"] = headers
            elif message["type"] == "http.response.body":
                stats.bytes_out += len(message.get("body", b""))
            elif message["type"] == ZERO_COPY:  # a file the server sends (blob pulls)
                stats.bytes_out += message.get("count") or 0
            await send(message)

        try:
            await self.app(scope, counting_receive, tagging_send)
        finally:
            if self.enabled:
                log.info(
                    "%s %s %s",
                    scope["method"],
                    scope["path"],
                    stats.status,
                    extra={
                        "request": {
                            "method": scope["method"],
                            "path": scope["path"],
                            "status": stats.status,
                            "bytes_in": stats.bytes_in,
                            "bytes_out": stats.bytes_out,
                            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                            "request_id": request_id.decode(),
                            "client": (scope.get("client") or ("-",))[0],
                        }
                    },
                )


def _request_id(scope: Scope) -> bytes:
    for key, value in scope.get("headers", []):
        if key == REQUEST_ID_HEADER and _SAFE_ID.match(value):
            return bytes(value)
    return os.urandom(16).hex().encode()  # what uuid4().hex looks like, at a third of the cost


# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape_one(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control character written as ``\\xNN``: one line, whatever
    a client put in a path, a name or a header."""
    return _CONTROL.sub(_escape_one, text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        request = getattr(record, "request", None)
        if request:
            entry.update(request)
        else:
            entry["message"] = record.getMessage()
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        request = getattr(record, "request", None)
        stamp = self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
        if request:
            r = {k: escape_controls(str(v)) for k, v in request.items()}
            path = r["path"].replace('"', '\\"')  # the quotes end the request field
            line = (
                f'{stamp} {r["client"]} "{r["method"]} {path}" {r["status"]} '
                f"in={r['bytes_in']} out={r['bytes_out']} {r['duration_ms']}ms id={r['request_id']}"
            )
        else:
            message = escape_controls(record.getMessage())
            line = f"{stamp} {record.levelname.lower()} {record.name}: {message}"
        if record.exc_info:
            # Indented, so that only real records start a line (an exception's message
            # may quote what a client sent).
            line += "\n" + "\n".join(
                "    " + escape_controls(part)
                for part in self.formatException(record.exc_info).splitlines()
            )
        return line


def uvicorn_log_config(level: str, fmt: str) -> dict[str, Any]:
    """uvicorn's own lines (start, stop, errors) in the registry's format, so that a JSON
    log holds nothing but JSON. Passed to uvicorn, which applies it in every worker."""
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"registry": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {
            "registry": {
                "class": "logging.StreamHandler",
                "formatter": "registry",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["registry"], "level": level.upper(), "propagate": False},
        },
    }


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("registry")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
