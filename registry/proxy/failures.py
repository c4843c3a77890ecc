"""An upstream's failure as the cache's client sees it: the spec error with the
upstream's reason, whether a cached copy may stand in, and the ``Warning`` that says so.

Never a 500: every RemoteError maps to a code of the table in registry/errors.py. A 404
upstream is an answer (the content is gone there), a 403 a decision; everything else --
5xx, 429, a timeout, a refused connection, wrong content, our credentials refused -- is
the upstream failing, and a cached copy within the staleness limit is served instead.
"""

from __future__ import annotations

import math
from typing import Literal

from registry import errors
from registry.errors import ErrorCode, RegistryError
from registry.remote import (
    Denied,
    NotFound,
    RemoteError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    Unsupported,
)

Kind = Literal["manifest", "blob", "referrers", "tags"]

_UNKNOWN: dict[Kind, ErrorCode] = {
    "manifest": errors.MANIFEST_UNKNOWN,
    "blob": errors.BLOB_UNKNOWN,
    "referrers": errors.MANIFEST_UNKNOWN,
    "tags": errors.NAME_UNKNOWN,
}


def may_serve_stale(exc: RemoteError) -> bool:
    return not isinstance(exc, NotFound | Denied)


def spec_error(exc: RemoteError, kind: Kind, detail: object = None) -> RegistryError:
    """The error a client of the cache gets for ``exc``."""
    reason = f"upstream {exc.upstream}: {exc.reason}"
    headers: dict[str, str] = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    code: ErrorCode
    if isinstance(exc, NotFound):
        code = _UNKNOWN[kind]
    elif isinstance(exc, TooManyRequests):
        code = errors.TOOMANYREQUESTS
    elif isinstance(exc, Unauthorized | Denied):
        code = errors.DENIED
        reason = f"upstream {exc.upstream} refused the cache's access: {exc.reason}"
    elif isinstance(exc, Unsupported):
        code = errors.UNSUPPORTED
    else:  # Unavailable, ProtocolError, VerificationError: the upstream failed
        code = errors.UNAVAILABLE
    return RegistryError(code, reason, detail=detail, headers=headers)


def unavailable(upstream: str, reason: str) -> RegistryError:
    return RegistryError(errors.UNAVAILABLE, f"upstream {upstream}: {reason}")


def stale_warning(exc: RemoteError) -> str:
    """A ``Warning`` header (RFC 9111 section 5.5's 110) naming why the copy is stale."""
    text = f"Response is Stale; upstream {exc.upstream}: {type(exc).__name__}"
    if isinstance(exc, Unavailable | TooManyRequests) and exc.status is not None:
        text += f" {exc.status}"
    return f'110 registry "{_quoted(text)}"'


def _quoted(text: str) -> str:
    return "".join(c for c in text if c.isprintable() and c not in '"\\')[:200]
