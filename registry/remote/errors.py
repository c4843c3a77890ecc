"""What can go wrong when talking to another registry, as a small typed hierarchy.

Every error names the upstream and the operation, and carries the upstream's reason (the
OCI error body's code and message, cut to ``REASON_MAX`` characters). Messages never hold
a secret: no credentials, no tokens, no query strings (presigned URLs carry signatures),
and transport exceptions are not chained (their context can hold request headers).
"""

from __future__ import annotations

import json
from typing import Any

REASON_MAX = 300


class RemoteError(Exception):
    """Base of every failure of a remote registry call."""

    def __init__(
        self,
        reason: str,
        *,
        upstream: str = "",
        operation: str = "",
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.reason = shorten(reason)
        self.upstream = upstream
        self.operation = operation
        self.status = status  # the HTTP status, None when no answer came
        self.code = code  # the OCI error code of the body (MANIFEST_UNKNOWN, ...)
        self.retry_after = retry_after  # seconds, from Retry-After (429 and 503)
        super().__init__(self._message())

    def _message(self) -> str:
        where = ": ".join(p for p in (self.upstream, self.operation) if p)
        status = f" ({self.status})" if self.status is not None else ""
        return f"{where}{status}: {self.reason}" if where else f"{self.reason}{status}"


class NotFound(RemoteError):
    """404: the repository, manifest, blob or upload session does not exist there."""


class Unauthorized(RemoteError):
    """401: no or wrong credentials (also from the token service)."""


class Denied(RemoteError):
    """403: the credentials are fine, the access is not granted."""


class TooManyRequests(RemoteError):
    """429 (or a TOOMANYREQUESTS body): rate limited; ``retry_after`` says for how long."""


class Unavailable(RemoteError):
    """5xx, a timeout, a refused or broken connection, a TLS failure: try later."""


class Unsupported(RemoteError):
    """405: the remote does not offer this operation (e.g. tag deletion, deletes off)."""


class ProtocolError(RemoteError):
    """An answer the protocol does not allow, or a request the remote rejected (400)."""


class VerificationError(RemoteError):
    """The content is not what was asked for: its digest or size differs, or the body
    ended early. Whatever was received must be thrown away."""


def shorten(text: str, limit: int = REASON_MAX) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def oci_reason(body: bytes) -> tuple[str | None, str | None]:
    """``(code, message)`` of the first entry of an OCI error body, when it is one."""
    try:
        doc: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, None
    entries = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        return None, None
    code, message = entries[0].get("code"), entries[0].get("message")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
    )


def error_for_status(
    status: int,
    body: bytes,
    *,
    upstream: str,
    operation: str,
    retry_after: float | None = None,
) -> RemoteError:
    """The error of an unexpected answer, with the upstream's reason."""
    code, message = oci_reason(body)
    if code is not None:
        reason = f"{code}: {message}" if message else code
    else:
        text = body[:REASON_MAX].decode("utf-8", "replace").strip()
        reason = f"HTTP {status}" + (f": {text}" if text and "<" not in text[:1] else "")
    kwargs: dict[str, Any] = {
        "upstream": upstream,
        "operation": operation,
        "status": status,
        "code": code,
        "retry_after": retry_after,
    }
    if status == 429 or code == "TOOMANYREQUESTS":
        return TooManyRequests(reason, **kwargs)
    kind: type[RemoteError]
    if status == 401:
        kind = Unauthorized
    elif status == 403:
        kind = Denied
    elif status == 404:
        kind = NotFound
    elif status == 405:
        kind = Unsupported
    elif status == 408 or status >= 500:
        kind = Unavailable
    else:
        kind = ProtocolError
    return kind(reason, **kwargs)
