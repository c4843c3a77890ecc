"""A store that stops answering does not hold a stop: a real `registry serve` on Ceph RGW
behind a proxy that stalls every request, stopped (SIGTERM) while a request waits on the
store, exits within its graceful timeout, not after boto3's read timeouts (60 s a try): the driver
does not wait for the calls still waiting on the store."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults import FaultProxy
from tests.rgw import RgwServer
from tests.server import RegistryServer

pytestmark = pytest.mark.s3

GRACE = 2.0


@pytest.fixture
def proxy(rgw: RgwServer) -> Iterator[FaultProxy]:
    proxy = FaultProxy(rgw.endpoint_url).start()
    yield proxy
    proxy.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stop_does_not_wait_for_a_store_that_hangs(
    rgw: RgwServer, proxy: FaultProxy, tmp_path: Path, workers: int
) -> None:
    s3 = rgw.s3_config(prefix=f"hung-{uuid.uuid4().hex[:12]}", endpoint_url=proxy.url)
    config = {
        "storage": {"driver": "s3", "s3": s3.model_dump(exclude_none=True)},
        "http": {"graceful_timeout": f"{GRACE:.0f}s"},
    }
    server = RegistryServer(tmp_path, config, workers=workers)
    server.start()
    try:
        proxy.fault(delay_headers=600, times=None)  # from now on the store never answers
        before = len(proxy.seen)
        digest = "sha256:" + "ab" * 32

        def waiting_request() -> None:
            # cut off by the stop: what counts is how long the stop takes
            with contextlib.suppress(httpx.HTTPError):
                httpx.head(f"{server.url}/v2/hung/store/blobs/{digest}", timeout=120)

        client = threading.Thread(target=waiting_request, daemon=True)
        client.start()
        deadline = time.monotonic() + 10
        while len(proxy.seen) == before and time.monotonic() < deadline:
            time.sleep(0.05)  # the request reached the store and waits there
        assert len(proxy.seen) > before
        assert server.proc is not None
        started = time.monotonic()
        code = server.stop(timeout=60)
        took = time.monotonic() - started
    finally:
        server.stop()
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the SIGTERM it handled
    assert took < GRACE + 5, took
