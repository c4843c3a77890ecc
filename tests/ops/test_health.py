"""/health/live and /health/ready over HTTP, on a healthy and on a failing backend, in
this process (over the S3 driver where the backend must fail as S3 does)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from registry.config import Config
from registry.health import ReadinessCheck
from registry.store import RegistryStore
from storage_backends import Driver
from storage_backends.factory import open_driver
from storage_backends.memory import MemoryDriver
from tests.asgi_registry import InProcessRegistry
from tests.gated_driver import GatedDriver
from tests.ops.helpers import denying_s3, silent_endpoint


def s3_config(endpoint: str, timeout: str = "5s") -> dict[str, Any]:
    return {
        "storage": {
            "driver": "s3",
            "s3": {
                "bucket": "nowhere",
                "endpoint_url": endpoint,
                "path_style": True,
                "access_key_id": "AKIAEXAMPLE",
                "secret_access_key": "not-a-real-secret",
            },
        },
        "health": {"storage_timeout": timeout},
    }


def s3_driver(config: dict[str, Any]) -> Driver:
    """The S3 driver ``config`` describes, for an in-process registry."""
    return open_driver(Config.model_validate(config).storage)


def test_live_answers_200() -> None:
    with InProcessRegistry() as registry, registry.client() as c:
        for method in ("GET", "HEAD"):
            r = c.request(method, "/health/live")
            assert r.status_code == 200
        assert c.get("/health/live").json() == {"status": "ok"}


def test_ready_reports_the_storage_backend() -> None:
    with InProcessRegistry() as registry, registry.client() as c:
        r = c.get("/health/ready")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["storage"]["driver"] == "filesystem"
    assert body["storage"]["ok"] is True
    assert body["mode"] == "read-write"


def test_ready_is_503_when_the_backend_refuses() -> None:
    with denying_s3() as endpoint:
        config = s3_config(endpoint)
        registry = InProcessRegistry(config, s3_driver(config))
        with registry, registry.client() as client:
            r = client.get("/health/ready")
            assert r.status_code == 503
            assert r.json()["status"] == "unavailable"
            # What went wrong is logged; the answer does not echo the backend's message.
            assert r.json()["storage"] == {
                "driver": "s3",
                "ok": False,
                "latency_ms": r.json()["storage"]["latency_ms"],
                "error": "storage backend error",
            }
            # Liveness does not depend on the backend.
            assert client.get("/health/live").status_code == 200
    assert "AccessDenied" in registry.log()


def test_ready_is_503_within_the_timeout_when_the_backend_hangs() -> None:
    """The S3 driver's calls hang in its threads; the event loop still answers."""
    registry: InProcessRegistry | None = None
    try:
        with silent_endpoint() as endpoint:
            config = s3_config(endpoint, timeout="1s")
            registry = InProcessRegistry(config, s3_driver(config))
            registry.start()
            with registry.client() as client:
                started = time.monotonic()
                r = client.get("/health/ready")
                elapsed = time.monotonic() - started
            assert r.status_code == 503
            assert r.json()["storage"]["error"] == "timeout"
            assert 0.9 < elapsed < 5
    finally:  # the endpoint is closed: the hung call fails, and the driver closes
        if registry is not None:
            registry.stop()


def test_concurrent_readiness_probes_share_one_storage_call() -> None:
    driver = GatedDriver(MemoryDriver())
    check = ReadinessCheck(RegistryStore(driver).ping, timeout=5)
    gate = driver.gate("list", "")  # the ping: it waits until every probe has asked

    async def probes() -> list[bool]:
        running = asyncio.gather(*(check.storage() for _ in range(20)))
        await gate.wait_reached()
        await asyncio.sleep(0)  # the other 19 probes join the call in flight
        gate.release.set()
        return [r.ok for r in await running]

    assert asyncio.run(probes()) == [True] * 20
    assert driver.count("list") == 1
