"""Health: the readiness check of the storage backend, and the probe the container's
HEALTHCHECK runs (``registry healthcheck``).

Readiness pings the store (``RegistryStore.ping``): a single cheap call on every driver
(a directory scan of a few entries; one ListObjectsV2 with MaxKeys=1) that fails when the
backend is unreachable, the bucket missing or the credentials wrong. It runs under a
timeout, and concurrent probes share one call, so a hanging backend cannot pile them up.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from registry.config import Config

log = logging.getLogger("registry.health")

_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


@dataclass(frozen=True)
class StorageStatus:
    ok: bool
    latency_ms: float
    error: str | None = None  # what a client may see: never the backend's own message


class ReadinessCheck:
    def __init__(self, ping: Callable[[], Awaitable[None]], timeout: float) -> None:
        self.ping = ping
        self.timeout = timeout
        self._running: asyncio.Task[StorageStatus] | None = None

    async def storage(self) -> StorageStatus:
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._check())
        # Shielded: a probe that gives up must not cancel the call others wait for.
        return await asyncio.shield(self._running)

    async def _check(self) -> StorageStatus:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self.ping(), self.timeout)
        except TimeoutError:
            log.error("readiness: storage did not answer within %.1fs", self.timeout)
            return StorageStatus(False, _ms_since(started), "timeout")
        except Exception as exc:
            log.error("readiness: storage check failed: %s", exc)
            return StorageStatus(False, _ms_since(started), "storage backend error")
        return StorageStatus(True, _ms_since(started))


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def local_url(config: Config, path: str) -> str:
    """The URL of ``path`` on the server this configuration describes, from inside its
    host or container: a wildcard listen address becomes loopback."""
    http = config.http
    host = _LOOPBACK.get(http.host, http.host)
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if http.tls_cert else "http"
    return f"{scheme}://{host}:{http.port}{path}"


def probe(url: str, timeout: float) -> tuple[bool, str]:
    """GET ``url``: (answered 200, what to print). TLS is not verified: the probe runs
    beside the server, whose certificate names a public host, not the loopback."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:  # noqa: S310
            return response.status == 200, response.read(4096).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return False, f"{exc.code} {exc.read(4096).decode(errors='replace')}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{url}: {exc}"
