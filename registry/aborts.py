"""Cutting a streamed response short on purpose: the ASGI extension
``http.response.abort``, the application's end (the server's is registry/server.py).

A response whose body turns out to be wrong midway -- a blob the pull-through cache
relays while its upstream cuts or corrupts it -- must never end with its last message:
that would tell the client the body is whole. ASGI has no message for "this response
failed"; an application that just returns leaves uvicorn to close the connection and
log "ASGI callable returned without completing response" as an error, for a failure the
application has already explained. Where the server offers this extension the
application sends ``{"type": "http.response.abort"}`` instead: the server closes the
connection without the last message, quietly. Elsewhere (an in-process test client,
another server) ``abort`` does nothing and the application returns as before.
"""

from __future__ import annotations

from starlette.types import Scope, Send

ABORT = "http.response.abort"


def offers_abort(scope: Scope) -> bool:
    return ABORT in scope.get("extensions", ())


async def abort(scope: Scope, send: Send) -> None:
    """End the started response without its last message, when the server can; the
    caller returns next either way (and has logged why)."""
    if offers_abort(scope):
        await send({"type": ABORT})
