"""Session cookies and CSRF tokens: signed with keys kept in storage, so that every
process accepts what another issued, and refused whenever anything about them is off."""

from __future__ import annotations

import base64
import json

import pytest

from registry.store import SessionKeys
from registry.store.session_keys import REFRESH_AFTER
from registry.ui.sessions import SessionCodec
from storage_backends import CheckedDriver
from storage_backends.memory import MemoryDriver, MemoryStore

pytestmark = pytest.mark.anyio
LIFETIME = 3600.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class ManualClock:
    """Both clocks at a time the test sets."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def process(shared: MemoryStore, clock: ManualClock) -> SessionCodec:
    """One registry process's codec over the shared storage."""
    keys = SessionKeys(CheckedDriver(MemoryDriver(store=shared)), clock)
    return SessionCodec(keys, clock, LIFETIME)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def test_a_cookie_from_one_process_is_good_in_another(clock: ManualClock) -> None:
    shared = MemoryStore()
    first, second = process(shared, clock), process(shared, clock)
    session, cookie = await first.issue("alice", "fp")
    read = await second.read(cookie)
    assert read == session
    assert await second.check_csrf(read, await first.csrf_token(session))


async def test_processes_starting_together_accept_each_others_cookies(clock: ManualClock) -> None:
    shared = MemoryStore()
    codecs = [process(shared, clock) for _ in range(3)]
    # Each signs before seeing the others' keys: at worst three keys, none overwritten.
    cookies = [(await c.issue("bob"))[1] for c in codecs]
    for codec in codecs:
        for cookie in cookies:
            assert (await codec.read(cookie)) is not None
    # Later cookies are all signed with one key: the first in id order.
    later = {(await process(shared, clock).issue())[0].key_id for _ in range(3)}
    assert len(later) == 1


async def test_tampered_forged_and_expired_cookies_are_refused(clock: ManualClock) -> None:
    codec = process(MemoryStore(), clock)
    _, cookie = await codec.issue("bob", "fp")
    version, key_id, payload, mac = cookie.split(".")
    doc = json.loads(base64.urlsafe_b64decode(payload + "=="))
    doc["u"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()
    for bad in (
        f"{version}.{key_id}.{forged}.{mac}",
        f"{version}.{'0' * 16}.{payload}.{mac}",
        f"{version}.{key_id}.{payload}.{mac[:-2]}AA",
        f"v2.{key_id}.{payload}.{mac}",
        cookie + ".x",
        "",
        "x" * 5000,
        f"{version}.{key_id}.{'W' * 40}.{mac}",
    ):
        assert await codec.read(bad) is None, bad
    assert await codec.read(cookie) is not None
    clock.now += LIFETIME
    assert await codec.read(cookie) is None


async def test_a_csrf_token_belongs_to_its_session(clock: ManualClock) -> None:
    codec = process(MemoryStore(), clock)
    mine, _ = await codec.issue()
    theirs, _ = await codec.issue()
    token = await codec.csrf_token(mine)
    assert await codec.check_csrf(mine, token)
    assert not await codec.check_csrf(theirs, token)
    assert not await codec.check_csrf(mine, "")
    assert not await codec.check_csrf(None, token)


async def test_deleting_the_keys_ends_every_session(clock: ManualClock) -> None:
    shared = MemoryStore()
    codec = process(shared, clock)
    _, cookie = await codec.issue("alice")
    await MemoryDriver(store=shared).delete("ui/session-keys")
    clock.now += REFRESH_AFTER
    assert await codec.read(cookie) is None
    _, fresh = await codec.issue("alice")
    assert await codec.read(fresh) is not None
