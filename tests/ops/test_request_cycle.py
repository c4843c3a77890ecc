"""The request/response cycle of registry/server.py in-process: what ``receive`` gives the
application when the connection ends while pieces of the body still wait in it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from registry.server import RegistryCycle

pytestmark = pytest.mark.anyio


class Transport:
    """What the cycle asks of a transport, with what was written."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def writelines(self, data: list[bytes]) -> None:
        self.written.extend(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def cycle() -> RegistryCycle:
    transport: Any = Transport()
    scope: Any = {"type": "http", "method": "PATCH", "http_version": "1.1", "headers": []}
    logger = logging.getLogger("test")
    plain = RequestResponseCycle(
        scope=scope,
        transport=transport,
        flow=FlowControl(transport),
        logger=logger,
        access_logger=logger,
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=True,
        on_response=lambda: None,
    )
    return RegistryCycle.adopt(plain, False, transport.close)


def connection_lost(c: RegistryCycle) -> None:
    """What the protocol does when the connection ends (uvicorn's connection_lost)."""
    c.disconnected = True
    c.message_event.set()


async def test_pieces_received_before_a_disconnect_reach_the_application() -> None:
    """The body timer closes a stalled upload while its first bytes still wait for the
    application: the upload keeps them only if the application gets them."""
    c = cycle()
    c.add_piece(b"a" * 600)
    c.add_piece(b"b" * 400)
    connection_lost(c)
    assert await c.receive() == {"type": "http.request", "body": b"a" * 600, "more_body": True}
    assert await c.receive() == {"type": "http.request", "body": b"b" * 400, "more_body": True}
    assert await c.receive() == {"type": "http.disconnect"}


async def test_a_body_complete_before_the_disconnect_is_given_whole() -> None:
    c = cycle()
    c.add_piece(b"all of it")
    c.more_body = False
    connection_lost(c)
    assert await c.receive() == {"type": "http.request", "body": b"all of it", "more_body": False}
    assert await c.receive() == {"type": "http.disconnect"}


async def test_a_disconnect_while_waiting_for_the_body_is_reported() -> None:
    c = cycle()
    waiting = asyncio.ensure_future(c.receive())
    await asyncio.sleep(0)
    connection_lost(c)
    assert await asyncio.wait_for(waiting, 5) == {"type": "http.disconnect"}


async def test_pieces_are_dropped_once_the_response_is_complete() -> None:
    """An application that answered without reading the body: what waits in the cycle is
    let go, and ``receive`` only reports the end."""
    c = cycle()
    c.add_piece(b"x" * 1000)
    await c.send(
        {"type": "http.response.start", "status": 401, "headers": [(b"content-length", b"0")]}
    )
    await c.send({"type": "http.response.body", "body": b""})
    assert c.response_complete and not c.pieces and c.queued == 0
    assert await c.receive() == {"type": "http.disconnect"}
