"""Token responses, the per-scope token cache with its single flight, and the bandwidth
token bucket (in-process: no remote needed)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from registry.remote.bandwidth import TokenBucket
from registry.remote.tokens import TokenCache, TokenGrant, parse_token_response

pytestmark = pytest.mark.anyio


def body(**doc: object) -> bytes:
    return json.dumps(doc).encode()


def test_token_response_fields() -> None:
    assert parse_token_response(body(token="t", expires_in=300)) == TokenGrant("t", 300.0)
    assert parse_token_response(body(access_token="a")) == TokenGrant("a", 60.0)  # spec default
    assert parse_token_response(body(token="t", expires_in=0)) == TokenGrant("t", 60.0)
    assert parse_token_response(body(expires_in=5)) is None
    assert parse_token_response(b"<html>") is None
    assert parse_token_response(b"[]") is None


def test_issued_at_moves_the_end_but_skew_cannot_expire_it() -> None:
    now = 1_700_000_000.0
    issued = "2023-11-14T22:11:40Z"  # now - 100 s
    grant = parse_token_response(body(token="t", expires_in=300, issued_at=issued), now)
    assert grant == TokenGrant("t", 200.0)
    # A clock far ahead of the token service: at most half the lifetime is taken off.
    grant = parse_token_response(body(token="t", expires_in=300, issued_at=issued), now + 1e6)
    assert grant == TokenGrant("t", 150.0)
    # A clock behind it: nothing is added.
    grant = parse_token_response(body(token="t", expires_in=300, issued_at=issued), now - 1e6)
    assert grant == TokenGrant("t", 300.0)


async def test_cache_single_flight_and_expiry() -> None:
    clock = [0.0]
    cache = TokenCache(lambda: clock[0])
    fetches = 0

    async def fetch() -> TokenGrant:
        nonlocal fetches
        fetches += 1
        await asyncio.sleep(0.05)
        return TokenGrant(f"tok{fetches}", 60.0)

    got = await asyncio.gather(*(cache.get("k", fetch) for _ in range(20)))
    assert got == ["tok1"] * 20 and fetches == 1
    clock[0] = 50.0
    assert await cache.get("k", fetch) == "tok1"
    clock[0] = 56.0  # within the safety margin before the end
    assert await cache.get("k", fetch) == "tok2" and fetches == 2
    cache.discard("k", "tok1")  # an older token: nothing happens
    assert cache.cached("k") == "tok2"
    cache.discard("k", "tok2")
    assert cache.cached("k") is None


async def test_a_cancelled_waiter_does_not_cancel_the_fetch() -> None:
    cache = TokenCache()
    gate = asyncio.Event()

    async def fetch() -> TokenGrant:
        await gate.wait()
        return TokenGrant("t", 60.0)

    first = asyncio.ensure_future(cache.get("k", fetch))
    second = asyncio.ensure_future(cache.get("k", fetch))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert await second == "t"


async def test_a_failed_fetch_is_not_cached() -> None:
    cache = TokenCache()
    calls = 0

    async def fetch() -> TokenGrant:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("token service down")
        return TokenGrant("t", 60.0)

    with pytest.raises(RuntimeError):
        await cache.get("k", fetch)
    assert await cache.get("k", fetch) == "t"


async def test_bucket_paces_to_its_rate() -> None:
    bucket = TokenBucket(rate=1_000_000, burst=100_000)
    started = time.monotonic()
    for _ in range(5):
        await bucket.take(100_000)  # 500 kB, 100 kB of it as burst: ~0.4 s
    elapsed = time.monotonic() - started
    assert 0.35 <= elapsed < 1.0
