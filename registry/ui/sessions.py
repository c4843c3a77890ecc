"""Session cookies and CSRF tokens of the web UI, signed with a key every process shares
(store/session_keys.py), so that any worker or replica accepts what another issued.

A cookie is ``v1.<key id>.<payload>.<mac>``: the payload (base64url JSON) names the
user (none for an anonymous visitor), a random nonce, the expiry, and a fingerprint of
the user's password hash, so that a password change ends the user's sessions; the mac
is HMAC-SHA256 over everything before it, compared in constant time. Nothing else is
kept: logging out replaces the cookie, and a copied cookie works until it expires (the
lifetime is ``ui.session_lifetime``).

A form's CSRF token is an HMAC of the session's nonce: a page of another origin cannot
read it, and the cookie itself is SameSite=Strict, so a forged cross-site request fails
twice. Logging in issues a new nonce (no session fixation).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from registry.store import SessionKeys
from registry.store.clock import Clock

COOKIE = "registry_session"
COOKIE_PATH = "/ui"
_VERSION = "v1"
_MAX_COOKIE = 2048  # a real one is a few hundred bytes; anything longer is not read


@dataclass(frozen=True)
class Session:
    user: str | None
    nonce: str
    expires: int  # seconds since the epoch
    fingerprint: str  # of the user's credential; "" for anonymous sessions
    key_id: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    def __init__(self, keys: SessionKeys, clock: Clock, lifetime: float) -> None:
        self._keys = keys
        self._clock = clock
        self.lifetime = lifetime

    async def issue(self, user: str | None = None, fingerprint: str = "") -> tuple[Session, str]:
        """A new session (a fresh nonce) and its cookie value."""
        key_id, key = await self._keys.signing_key()
        session = Session(
            user,
            secrets.token_hex(16),
            int(self._clock.time() + self.lifetime),
            fingerprint,
            key_id,
        )
        payload: dict[str, Any] = {
            "u": user,
            "n": session.nonce,
            "e": session.expires,
            "f": fingerprint,
        }
        body = f"{_VERSION}.{key_id}.{_b64(json.dumps(payload, separators=(',', ':')).encode())}"
        return session, f"{body}.{_b64(_mac(key, body))}"

    async def read(self, value: str | None) -> Session | None:
        """The session a cookie carries, or None when it is absent, forged, signed with
        a key that is gone, malformed or expired."""
        if not value or len(value) > _MAX_COOKIE:
            return None
        parts = value.split(".")
        if len(parts) != 4 or parts[0] != _VERSION:
            return None
        _, key_id, payload, mac = parts
        key = await self._keys.key(key_id)
        if key is None:
            return None
        try:
            given = _unb64(mac)
            doc = json.loads(_unb64(payload))
        except (binascii.Error, ValueError, RecursionError):
            return None
        if not hmac.compare_digest(given, _mac(key, f"{_VERSION}.{key_id}.{payload}")):
            return None
        if not isinstance(doc, dict):
            return None
        user, nonce, expires, fingerprint = doc.get("u"), doc.get("n"), doc.get("e"), doc.get("f")
        if not (
            (user is None or isinstance(user, str))
            and isinstance(nonce, str)
            and isinstance(expires, int)
            and isinstance(fingerprint, str)
        ):
            return None
        if expires <= self._clock.time():
            return None
        return Session(user, nonce, expires, fingerprint, key_id)

    async def csrf_token(self, session: Session) -> str:
        key = await self._keys.key(session.key_id)
        if key is None:
            return ""
        return _b64(_mac(key, f"csrf.{session.nonce}"))

    async def check_csrf(self, session: Session | None, token: str) -> bool:
        """Whether a form's token belongs to this session (constant time)."""
        if session is None or not token:
            return False
        expected = await self.csrf_token(session)
        return bool(expected) and hmac.compare_digest(expected.encode(), token.encode())


def _mac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()
