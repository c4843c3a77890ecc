"""/health/live and /health/ready over HTTP, on a healthy and on a failing backend."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.health import ReadinessCheck
from tests.conftest import start_server
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


def test_live_answers_200(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    server = start_server(request, tmp_path)
    for method in ("GET", "HEAD"):
        r = httpx.request(method, f"{server.url}/health/live")
        assert r.status_code == 200
    assert httpx.get(f"{server.url}/health/live").json() == {"status": "ok"}


def test_ready_reports_the_storage_backend(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    server = start_server(request, tmp_path)
    r = httpx.get(f"{server.url}/health/ready")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["storage"]["driver"] == "filesystem"
    assert body["storage"]["ok"] is True
    assert body["mode"] == "read-write"


def test_ready_is_503_when_the_backend_refuses(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with denying_s3() as endpoint:
        server = start_server(request, tmp_path, config=s3_config(endpoint))
        r = httpx.get(f"{server.url}/health/ready", timeout=30)
        assert r.status_code == 503
        assert r.json()["status"] == "unavailable"
        # What went wrong is logged; the answer does not echo the backend's own message.
        assert r.json()["storage"] == {
            "driver": "s3",
            "ok": False,
            "latency_ms": r.json()["storage"]["latency_ms"],
            "error": "storage backend error",
        }
        # Liveness does not depend on the backend.
        assert httpx.get(f"{server.url}/health/live").status_code == 200
        server.stop()
    assert "AccessDenied" in server.log()


def test_ready_is_503_within_the_timeout_when_the_backend_hangs(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with silent_endpoint() as endpoint:
        server = start_server(request, tmp_path, config=s3_config(endpoint, timeout="1s"))
        started = time.monotonic()
        r = httpx.get(f"{server.url}/health/ready", timeout=30)
        elapsed = time.monotonic() - started
        assert r.status_code == 503
        assert r.json()["storage"]["error"] == "timeout"
        assert 0.9 < elapsed < 5
    server.stop()


class _SlowStorage:
    def __init__(self) -> None:
        self.calls = 0

    async def ping(self) -> None:
        self.calls += 1
        await asyncio.sleep(0.2)


def test_concurrent_readiness_probes_share_one_storage_call() -> None:
    driver = _SlowStorage()
    check = ReadinessCheck(driver.ping, timeout=5)

    async def probes() -> list[bool]:
        results = await asyncio.gather(*(check.storage() for _ in range(20)))
        return [r.ok for r in results]

    assert asyncio.run(probes()) == [True] * 20
    assert driver.calls == 1
