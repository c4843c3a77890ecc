"""The HTTP server: uvicorn (httptools) with the limits a registry on the open network
needs, below the application: request line and header size, a deadline for a request's
head, an idle limit while its body is read, and a connection cap (docs/operations.md).

The limits live in a protocol subclass because the application never sees what they are
about: a head that is too large or too slow is refused before any route exists, and
bytes held by the HTTP parser are bounded only there. The subclass also recognises a TLS
ClientHello on a plain-HTTP port (podman and skopeo try HTTPS first) and says what it
means once, instead of uvicorn's "Invalid HTTP request received." on every call.

Request bodies: uvicorn appends every piece the socket delivers to one buffer and copies
it out whole at each ``receive``, two copies of every byte pushed. Here the pieces wait in
a queue and ``receive`` hands them out one by one as they came, with reading paused while
``BODY_HIGH_WATER`` bytes wait (back-pressure on the client; memory per upload bounded).
On plain HTTP the protocol also offers ASGI's zero-copy send, which blob pulls use
(registry/zerocopy.py), and on every connection a deliberate abort of a response
(registry/aborts.py).

Answers before the body: the application may answer a request it has not read (401, 404
for an unknown upload, a quota's 403) while the client is still sending it. Closing then,
with bytes unread, resets the connection, and a client still writing sees the reset, not
the answer (skopeo: ``write: broken pipe``). So the rest of such a body is read and
dropped, up to ``DISCARD_BYTES`` and for ``DISCARD_SECONDS`` at most, before the
connection is closed or serves its next request (nginx's lingering close).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import socket
import sys
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import httptools
import uvicorn.server
from uvicorn.config import STARTUP_FAILURE
from uvicorn.config import Config as UvicornConfig
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from registry.aborts import ABORT
from registry.request_log import ZERO_COPY
from registry.serve_plan import HttpLimits, ServePlan
from registry.zerocopy import ZeroCopyCycle
from storage_backends import malloc

log = logging.getLogger("registry.http")

# How long a refused connection may keep sending before it is closed: closing at once
# with unread bytes would reset it, and the client would never read the refusal.
LINGER_SECONDS = 2.0
# A request answered before its body arrived (401, 404, a quota's 403): how long and how
# much of the rest of its body is read and dropped before the connection is closed
# anyway (nginx's lingering_time). Past DISCARD_BYTES reading pauses: the client waits.
DISCARD_SECONDS = 5.0
DISCARD_BYTES = 16 * 1024 * 1024
# Request body bytes received and not yet taken by the application before reading pauses;
# it resumes below half of it. Blob pushes gather about as much before a write and hash
# step (store/uploads.py), so this lets the next step's bytes arrive meanwhile.
BODY_HIGH_WATER = 1024 * 1024
# A graceful stop (SIGTERM, a HUP roll-over) finds a connection accepted but its request
# not read yet: the client sends it right after connecting, and closing now would reset
# it as it arrives. It is served (then the connection closes) if it begins this soon.
FIRST_REQUEST_GRACE = 1.0


class _Stop(Exception):
    """Raised in a parser callback: the connection is closing, parse no further."""


class _Refusal(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


def _is_tls_client_hello(data: bytes) -> bool:
    """A TLS handshake record (content type 22, version 3.x): an HTTPS client."""
    return len(data) >= 3 and data[0] == 0x16 and data[1] == 0x03 and data[2] <= 0x04


class _TimedFlowControl(FlowControl):
    """uvicorn's flow control, telling the protocol when reading resumes: while it was
    paused the application, not the client, was the slow one."""

    def __init__(self, transport: asyncio.Transport, protocol: RegistryHttpProtocol) -> None:
        super().__init__(transport)
        self._protocol = protocol

    def resume_reading(self) -> None:
        if self.read_paused:
            self._protocol.last_read = self._protocol.loop.time()
        super().resume_reading()


class _HeldWrites:
    """A cycle's transport that keeps what uvicorn writes for a response head until the
    body's first write, so that a small response leaves in one write: one system call
    and one TCP segment instead of two. The cycle flushes it after every other message.
    Its ``close`` is the protocol's, which lets the client finish sending a body first."""

    def __init__(self, transport: asyncio.Transport, close: Callable[[], None]) -> None:
        self.raw = transport
        self._close = close
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        self._held.append(data)

    def flush(self) -> None:
        if self._held:
            held, self._held = self._held, []
            self.raw.writelines(held)  # uvloop: one writev

    def close(self) -> None:
        self.flush()
        self._close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class RegistryCycle(ZeroCopyCycle):
    """uvicorn's request/response cycle with the zero-copy send, and a request body kept
    as the pieces it arrived in."""

    pieces: deque[bytes]
    queued: int  # bytes in pieces
    body_given: bool  # the body's last message was returned: receive waits for the end
    http10_keep_alive: bool  # an HTTP/1.0 client asked to keep the connection

    @classmethod
    def adopt(
        cls, cycle: RequestResponseCycle, http10_keep_alive: bool, close: Callable[[], None]
    ) -> RegistryCycle:
        # uvicorn builds its cycle by name in on_headers_complete; this makes it one of
        # ours (the same object, so the task already made for it calls our methods).
        cycle.__class__ = cls
        adopted = cast(RegistryCycle, cycle)
        adopted.pieces = deque()
        adopted.queued = 0
        adopted.body_given = False
        adopted.http10_keep_alive = http10_keep_alive
        if http10_keep_alive:
            adopted.keep_alive = True
        adopted.transport = cast(asyncio.Transport, _HeldWrites(adopted.transport, close))
        return adopted

    async def send(self, message: Any) -> None:
        if self.waiting_for_100_continue and message["type"] == "http.response.start":
            # Answered before the client was asked for the body: it may send it or not,
            # so the connection cannot go on with another request (RFC 9110, 15.2.1).
            self.keep_alive = False
        if self.http10_keep_alive and message["type"] == "http.response.start":
            # HTTP/1.0 keeps a connection only when asked and told, and only for a body
            # of known length (uvicorn closes every HTTP/1.0 connection: ab, for one,
            # then measures a TCP handshake per request).
            headers = list(message.get("headers", ()))
            if any(name.lower() == b"content-length" for name, _ in headers):
                message = {**message, "headers": [*headers, (b"connection", b"keep-alive")]}
            else:
                self.keep_alive = False
        if message["type"] == ABORT:
            self.abort()
            return
        held = cast(_HeldWrites, self.transport)
        if message["type"] == ZERO_COPY:
            held.flush()  # the head goes before the file
        await super().send(message)
        if message["type"] != "http.response.start":
            held.flush()
        if self.response_complete and self.pieces:
            self.pieces.clear()  # the application is done with the body
            self.queued = 0

    def abort(self) -> None:
        """The application cut its response short and has said why: close the
        connection without the last message (the client sees an incomplete body), and
        as when a client leaves, uvicorn then logs nothing."""
        if self.response_complete or self.disconnected:
            return
        self.disconnected = True
        self.keep_alive = False
        self.transport.close()  # what was sent still goes, then the connection ends
        self.message_event.set()

    def add_piece(self, piece: bytes) -> None:
        self.pieces.append(piece)
        self.queued += len(piece)
        if self.queued > BODY_HIGH_WATER:
            self.flow.pause_reading()
        self.message_event.set()

    async def receive(self) -> Any:
        if self.waiting_for_100_continue and not self.transport.is_closing():
            cast(_HeldWrites, self.transport).raw.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_100_continue = False
        # As uvicorn: wait for a piece or the end of the body; once the body is given,
        # wait for the end of the response or of the connection.
        while not (self.disconnected or self.response_complete) and (
            self.body_given or not (self.pieces or not self.more_body)
        ):
            self.flow.resume_reading()
            await self.message_event.wait()
            self.message_event.clear()
        # What arrived before the client went away is the application's still (an upload
        # keeps it); the disconnect comes after it.
        if self.response_complete or (
            self.disconnected and (self.body_given or (self.more_body and not self.pieces))
        ):
            return {"type": "http.disconnect"}
        body = b""
        if self.pieces:
            body = self.pieces.popleft()
            self.queued -= len(body)
            if self.queued <= BODY_HIGH_WATER // 2:
                self.flow.resume_reading()
        more = self.more_body or bool(self.pieces)
        self.body_given = not more
        return {"type": "http.request", "body": body, "more_body": more}


class RegistryHttpProtocol(HttpToolsProtocol):
    tls_probe_seen = False  # per process: the first TLS probe is explained at INFO

    def __init__(
        self,
        config: UvicornConfig,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: HttpLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self.last_read = 0.0
        self._first_data = True
        self._in_head = False  # the head of a request is being parsed
        self._heads = 0  # heads begun on this connection
        self._head_size = 0  # bytes of request target and header fields parsed so far
        self._pending = 0  # bytes received for the current head
        self._reading_body = False
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        # Set while the body of an answered request is read and dropped (see _discard).
        self._discard_timer: asyncio.TimerHandle | None = None
        self._discard_left = DISCARD_BYTES  # bytes still read before reading pauses
        self._close_after_body = False
        self._last_request = False  # a stop is under way: the request read now is the last
        self._grace_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------- connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = _TimedFlowControl(transport, self)
        self._arm_head_timer()  # a connection that never sends a byte is dropped too

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)
        if isinstance(self.cycle, RegistryCycle):
            self.cycle.connection_lost()

    def eof_received(self) -> bool:  # type: ignore[override]  # uvicorn: None, closing
        """The client closed its side. A request it sent whole is still answered on the
        side still open (``printf ... | nc -N`` and other scripts half-close after their
        request), then the connection closes; uvicorn closed at once and the answer was
        lost. A request with body still to come can never complete: that ends the
        connection, as a disconnect. (TLS has no half-close: its transport closes.)"""
        cycle = self.cycle
        if (
            self.scheme == "http"
            and isinstance(cycle, RegistryCycle)
            and self._request_active()
            and not cycle.more_body
        ):
            cycle.keep_alive = False
            return True  # keep the transport open for writing
        return False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._count_discarded(len(data))  # lingering after a refusal: read and drop
            return
        if self._first_data:
            self._first_data = False
            if self.scheme == "http" and _is_tls_client_hello(data):
                self._tls_probe()
                return
        self._unset_keepalive_if_required()
        self.last_read = self.loop.time()
        if self._discard_timer is not None:
            self._count_discarded(len(data))  # the body's end (if here) resumes reading
        was_in_head, heads = self._in_head, self._heads
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _Stop):
                return
            if isinstance(exc.__context__, _Refusal):
                self._refuse(exc.__context__)
                return
            self._invalid_request()
            return
        except httptools.HttpParserError:
            self._invalid_request()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._in_head:
            # httptools keeps the header being received until it is complete: count the
            # bytes that arrive for a head, not only the fields it has delivered.
            if was_in_head and heads == self._heads:
                self._pending += len(data)
            else:
                self._pending = self._head_size
            if self._pending > self.limits.max_header_size + self.limits.max_request_line:
                self._refuse(self._too_large())
                return
        if self._head_timer is None and not self._request_active() and not self._reading_body:
            self._arm_head_timer()  # between requests: the next head has a deadline too
        if self._reading_body and self._body_timer is None and self._discard_timer is None:
            self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_check)

    def _invalid_request(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)

    # --------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        if self._close_after_body:
            raise _Stop()  # a request after the one whose answer said close
        super().on_message_begin()
        extensions: dict[str, dict[object, object]] = {ABORT: {}}
        if self.scheme == "http":
            extensions[ZERO_COPY] = {}
        self.scope["extensions"] = extensions
        self._in_head = True
        self._heads += 1
        self._head_size = 0
        if self._head_timer is None:
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        if len(self.url) + len(url) > self.limits.max_request_line:
            raise _Refusal(
                414,
                "URI Too Long",
                f"the request target is longer than {self.limits.max_request_line} bytes",
            )
        super().on_url(url)
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.limits.max_header_size:
            raise self._too_large()
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        self._reading_body = True  # until on_message_complete, which may follow at once
        super().on_headers_complete()
        if type(self.cycle) is RequestResponseCycle:
            http10_keep_alive = (
                self.scope["http_version"] == "1.0" and self.parser.should_keep_alive()
            )
            RegistryCycle.adopt(self.cycle, http10_keep_alive, self.close_connection)
        if self._last_request and self.cycle is not None:
            self.cycle.keep_alive = False

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        cast(RegistryCycle, cycle).add_piece(body)

    def on_message_complete(self) -> None:
        self._reading_body = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()
        if self._discard_timer is not None:  # the answered request's body is all read
            self._discard_timer.cancel()
            self._discard_timer = None
            self.flow.resume_reading()
            if self._close_after_body:
                self.transport.close()  # nothing unread: a FIN, not a reset

    def _too_large(self) -> _Refusal:
        return _Refusal(
            431,
            "Request Header Fields Too Large",
            f"the request header fields are larger than {self.limits.max_header_size} bytes",
        )

    # ----------------------------------------------------------------------- timers

    def _request_active(self) -> bool:
        """A request's head is complete and its response is not."""
        return self.cycle is not None and not self.cycle.response_complete

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_head_timer()
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        if self._discard_timer is not None:
            self._discard_timer.cancel()
            self._discard_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._request_active():
            return
        if not self._in_head:  # idle between requests, or never sent a byte
            log.debug("closed an idle connection from %s", self._peer())
            self.transport.close()
            return
        log.info(
            "closed a connection from %s: no complete request head within %gs",
            self._peer(),
            self.limits.header_timeout,
        )
        self._refuse(
            _Refusal(408, "Request Timeout", "the request head did not arrive in time"),
            quiet=True,
        )

    def _body_check(self) -> None:
        self._body_timer = None
        if not self._reading_body or self.transport.is_closing():
            return
        now = self.loop.time()
        cycle = self.cycle
        if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
            # The application is not reading yet: the client is not the slow one.
            self.last_read = now
        idle = now - self.last_read
        if idle < self.limits.body_timeout:
            self._body_timer = self.loop.call_later(
                self.limits.body_timeout - idle, self._body_check
            )
            return
        log.info(
            "closed a connection from %s: the request body stalled for %gs",
            self._peer(),
            self.limits.body_timeout,
        )
        self.transport.close()  # the application sees a disconnect

    # ------------------------------------------------------- answers before the body

    def close_connection(self) -> None:
        """Close for a cycle (an answer that said ``Connection: close``, a failed
        response): at once, unless the request's body is still arriving. Closing with
        unread bytes resets the connection, and a client still sending then sees the
        reset (Go: ``broken pipe``) instead of the answer; so the body is read to its end
        first (bounded, see _discard), the answer's end marked by a FIN meanwhile."""
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if (
            not self._reading_body
            or self._refused
            or self.pipeline  # a request after this one is parsed already: no body comes
            or (cycle is not None and cycle.disconnected)
        ):
            self.transport.close()
            return
        self._close_after_body = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._discard()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        cycle = self.cycle
        if self._reading_body and cycle is not None and cycle.response_complete:
            # Answered before its body was read (a keep-alive connection): the rest of
            # the body is dropped as it comes, then the next request is read.
            self._discard()
        if self._discard_timer is not None:
            self._unset_keepalive_if_required()  # the discard's deadline is the one

    def shutdown(self) -> None:
        if self._discard_timer is not None:
            self._close_after_body = True  # closed when the body ends, or at the deadline
            return
        on_its_way = self._in_head or (self._heads == 0 and self.cycle is None)
        if on_its_way and not self.transport.is_closing():
            self._last_request = True
            heads = self._heads
            self._grace_timer = self.loop.call_later(FIRST_REQUEST_GRACE, self._grace_over, heads)
            return
        super().shutdown()

    def _grace_over(self, heads: int) -> None:
        """Closes the connection if no request began in the stop's grace."""
        self._grace_timer = None
        if self._heads == heads and not self._in_head and not self.transport.is_closing():
            self.transport.close()

    def _discard(self) -> None:
        """Read and drop the rest of the current request's body: DISCARD_BYTES of it at
        most (then reading pauses), for DISCARD_SECONDS at most (then the connection is
        closed, whatever it costs the client), as nginx's lingering close."""
        if self._discard_timer is not None or self.transport.is_closing():
            return
        self._cancel_timers()
        self._discard_left = DISCARD_BYTES
        self.flow.resume_reading()
        self._discard_timer = self.loop.call_later(DISCARD_SECONDS, self._discard_timeout)

    def _count_discarded(self, size: int) -> None:
        self._discard_left -= size
        if self._discard_left <= 0:
            self.flow.pause_reading()

    def _discard_timeout(self) -> None:
        self._discard_timer = None
        if self.transport.is_closing():
            return
        log.info(
            "closed a connection from %s: the body of an answered request went on for %gs",
            self._peer(),
            DISCARD_SECONDS,
        )
        self.transport.close()

    # --------------------------------------------------------------------- refusals

    def _peer(self) -> str:
        return self.client[0] if self.client else "-"

    def _refuse(self, refusal: _Refusal, quiet: bool = False) -> None:
        """Answer and close, reading (and dropping) what the client still sends for a
        moment, so that it gets to read the answer."""
        if not quiet:
            log.warning(
                "refused a request from %s (%d): %s", self._peer(), refusal.status, refusal.message
            )
        self._refused = True
        self._cancel_timers()
        self._discard_left = DISCARD_BYTES
        body = (refusal.message + "\n").encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (refusal.status, refusal.reason.encode(), len(body), body)
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _tls_probe(self) -> None:
        """An HTTPS client on this plain-HTTP port: tell it so in plain HTTP (Go clients
        then say "server gave HTTP response to HTTPS client") and close."""
        cls = RegistryHttpProtocol
        level = logging.DEBUG if cls.tls_probe_seen else logging.INFO
        cls.tls_probe_seen = True
        log.log(
            level,
            "a client at %s opened TLS (HTTPS) on this plain-HTTP port and was told so; "
            "podman and skopeo try HTTPS first and fall back to HTTP for a registry they "
            "are told is insecure, so this is expected with them (logged once at info; "
            "serve TLS with http.tls_cert/tls_key to stop it)",
            self._peer(),
        )
        self._refuse(
            _Refusal(400, "Bad Request", "this port speaks plain HTTP, not HTTPS"), quiet=True
        )


class _Server(uvicorn.server.Server):
    """uvicorn's server, telling ``on_started`` once it serves."""

    def __init__(self, config: UvicornConfig, on_started: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # The application is made (create_app), nothing is served yet: what making it
        # parsed and dropped -- botocore's data, the configuration, the routes' models --
        # is free but still resident. One collection (about 20 ms, once) and a trim give
        # it back before the first request.
        gc.collect()
        malloc.trim()
        await super().startup(sockets)
        if self.started and self._on_started is not None:
            self._on_started()


def _server(plan: ServePlan, on_started: Callable[[], None] | None = None) -> uvicorn.server.Server:
    protocol = functools.partial(RegistryHttpProtocol, limits=plan.limits)
    options = {**plan.options, "workers": 1}
    config = UvicornConfig(
        "registry.app:app_from_environment",
        factory=True,
        http=cast(Any, protocol),  # httptools: app.py tunes its flow control for pushes
        ws="none",
        loop="uvloop",
        proxy_headers=True,
        access_log=False,
        server_header=False,
        **options,
    )
    return _Server(config, on_started)


def run(
    plan: ServePlan,
    sock: socket.socket | None = None,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Serve ``registry.app:app_from_environment`` as ``plan`` says, in this process: on
    its own port (one worker), or as one of several workers on ``sock``, which the
    supervisor bound (registry/supervisor.py, worker.py); ``on_started`` once serving."""
    server = _server(plan, on_started)
    server.run(sockets=None if sock is None else [sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)
