"""What the client reports about each upstream request, for metrics and logs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from registry.remote.headers import RateLimit

log = logging.getLogger("registry.remote")


@dataclass(frozen=True)
class UpstreamRequest:
    """One HTTP exchange with an upstream (a redirect hop and a 401 retry count apart).

    Reported when the exchange is over: for a blob stream, when the stream is closed."""

    upstream: str  # the client's name for the remote
    operation: str  # manifest_get, blob_get, token, upload_chunk, ... (see client.py)
    method: str
    status: int | None  # None: no answer (refused, timeout, broken connection)
    bytes_received: int  # body bytes read
    bytes_sent: int  # body bytes sent
    seconds: float
    error: str | None = None  # the error class name when the exchange failed
    rate_limit: RateLimit | None = None  # Docker Hub's ratelimit-* headers, when sent


RequestHook = Callable[[UpstreamRequest], None]


def report(hook: RequestHook | None, event: UpstreamRequest) -> None:
    """Call the hook; a failing hook is logged and never fails the request."""
    if hook is None:
        return
    try:
        hook(event)
    except Exception:
        log.exception("the upstream request hook failed")
