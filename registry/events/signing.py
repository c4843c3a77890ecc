"""Standard Webhooks signatures (standardwebhooks.com), both sides (pure).

Every request carries ``webhook-id`` (the message id: the event's id, the same on every
retry), ``webhook-timestamp`` (seconds since the epoch, of this attempt) and
``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`` for each
configured secret, space-separated, so that while a secret is rotated a receiver that
knows either one verifies the request. A secret is ``whsec_`` and base64 of the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
TOLERANCE = 300.0  # seconds a receiver accepts between the timestamp and its clock


def secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def sign(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers of one request; no signature header without keys."""
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if keys:
        headers["webhook-signature"] = " ".join(signature(k, msg_id, timestamp, body) for k in keys)
    return headers


def verify(keys: Sequence[bytes], headers: Mapping[str, str], body: bytes, now: float) -> bool:
    """Whether a request's headers carry a valid signature by one of ``keys``, made
    within ``TOLERANCE`` of ``now`` (what a receiver does)."""
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    if not msg_id or not stamp.isdigit() or abs(now - int(stamp)) > TOLERANCE:
        return False
    offered = headers.get("webhook-signature", "").split()
    for key in keys:
        expected = signature(key, msg_id, int(stamp), body)
        if any(hmac.compare_digest(expected, s) for s in offered):
            return True
    return False
