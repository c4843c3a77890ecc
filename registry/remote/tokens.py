"""Bearer tokens of the Docker token flow, cached per scope until they expire.

Concurrent requests for one scope share one fetch (single flight), and a waiter that is
cancelled does not cancel the fetch for the others.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

DEFAULT_LIFETIME = 60.0  # token.md: expires_in defaults to 60 seconds when absent
SAFETY_MARGIN = 5.0  # refetch a little before the end, not after a 401


@dataclass(frozen=True)
class TokenGrant:
    token: str
    lifetime: float  # seconds it stays usable from now


def parse_token_response(body: bytes, now: float | None = None) -> TokenGrant | None:
    """The token and its remaining lifetime from a token service's JSON answer.

    ``token`` or ``access_token`` (the OAuth2 name); ``expires_in`` (default 60 s);
    ``issued_at`` moves the end earlier when the token was issued before it arrived, but
    by at most half its lifetime, so that a clock skew between hosts cannot make every
    token look expired (which would fetch a token per request)."""
    try:
        doc: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    token = doc.get("token") or doc.get("access_token")
    if not isinstance(token, str) or not token:
        return None
    expires_in = doc.get("expires_in")
    lifetime = (
        float(expires_in)
        if isinstance(expires_in, int | float)
        and not isinstance(expires_in, bool)
        and expires_in > 0
        else DEFAULT_LIFETIME
    )
    issued = doc.get("issued_at")
    if isinstance(issued, str):
        try:
            issued_ts = datetime.fromisoformat(issued.replace("Z", "+00:00")).timestamp()
        except ValueError:
            issued_ts = None
        if issued_ts is not None:
            age = (time.time() if now is None else now) - issued_ts
            lifetime -= min(max(age, 0.0), lifetime / 2)
    return TokenGrant(token, lifetime)


@dataclass
class _Cached:
    token: str
    expires: float


class TokenCache:
    """Tokens by key (realm, service and scopes); ``clock`` is monotonic seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[str, _Cached] = {}
        self._fetches: dict[str, asyncio.Future[str]] = {}

    def cached(self, key: str) -> str | None:
        entry = self._tokens.get(key)
        if entry is None or self._clock() >= entry.expires:
            return None
        return entry.token

    def discard(self, key: str, token: str) -> None:
        """Forget ``token`` (a 401 said it is stale), unless a newer one replaced it."""
        entry = self._tokens.get(key)
        if entry is not None and entry.token == token:
            del self._tokens[key]

    def tokens(self) -> list[str]:
        """The tokens held (to scrub them from error texts)."""
        return [e.token for e in self._tokens.values()]

    async def get(self, key: str, fetch: Callable[[], Awaitable[TokenGrant]]) -> str:
        token = self.cached(key)
        if token is not None:
            return token
        future = self._fetches.get(key)
        if future is None:
            future = asyncio.ensure_future(self._fill(key, fetch))
            self._fetches[key] = future
            future.add_done_callback(lambda f: self._done(key, f))
        return await asyncio.shield(future)

    async def _fill(self, key: str, fetch: Callable[[], Awaitable[TokenGrant]]) -> str:
        grant = await fetch()
        margin = min(SAFETY_MARGIN, grant.lifetime / 10)
        self._tokens[key] = _Cached(grant.token, self._clock() + grant.lifetime - margin)
        return grant.token

    def _done(self, key: str, future: asyncio.Future[str]) -> None:
        if self._fetches.get(key) is future:
            del self._fetches[key]
        if not future.cancelled():
            future.exception()  # retrieved: no "never retrieved" warning if all waiters left
