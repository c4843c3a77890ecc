"""Failures of the remote as typed errors with the upstream's reason: 429 with
Retry-After, 503, a refused connection, a stalled answer, TLS that does not verify; and
the report of every request, with Docker Hub's rate-limit headers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from registry.remote import (
    RateLimit,
    RegistryClient,
    TooManyRequests,
    Unavailable,
    UpstreamRequest,
)
from tests.auth.conftest import unique
from tests.conftest import start_server
from tests.distribution import DistributionServer
from tests.faults import FaultProxy
from tests.images import image
from tests.ops.test_tls import self_signed
from tests.remote.remotes import seed, settings
from tests.server import free_port

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def repo(distribution: DistributionServer) -> str:
    name = unique("errors")
    seed(distribution, name, image(layers=1))
    return name


async def test_429_carries_retry_after_and_the_reason(
    distribution: DistributionServer, proxies: Callable[..., FaultProxy], repo: str
) -> None:
    proxy = proxies(distribution.url)
    proxy.fault(path="/manifests/", status=429, retry_after="7")
    async with RegistryClient(settings(proxy.url), name="hub") as client:
        with pytest.raises(TooManyRequests) as exc:
            await client.get_manifest(repo, "v1")
    err = exc.value
    assert (err.status, err.code, err.retry_after) == (429, "TOOMANYREQUESTS", 7.0)
    assert err.upstream == "hub" and err.operation == "manifest_get"
    assert "injected by the proxy" in err.reason


async def test_503_is_unavailable(
    distribution: DistributionServer, proxies: Callable[..., FaultProxy], repo: str
) -> None:
    proxy = proxies(distribution.url)
    proxy.fault(path="/manifests/", status=503, retry_after="2", times=2)
    async with RegistryClient(settings(proxy.url)) as client:
        with pytest.raises(Unavailable) as exc:
            await client.head_manifest(repo, "v1")
        assert exc.value.status == 503 and exc.value.retry_after == 2.0
        with pytest.raises(Unavailable):
            await client.get_manifest(repo, "v1")
        assert (await client.get_manifest(repo, "v1")).size > 0


async def test_refused_connection_is_unavailable_and_reported() -> None:
    events: list[UpstreamRequest] = []
    async with RegistryClient(
        settings(f"http://127.0.0.1:{free_port()}"), on_request=events.append
    ) as client:
        with pytest.raises(Unavailable, match="cannot connect") as exc:
            await client.get_manifest("some/repo", "v1")
    assert exc.value.status is None
    assert [(e.operation, e.status, e.error) for e in events] == [
        ("manifest_get", None, "ConnectError")
    ]


async def test_slow_response_headers_time_out(
    distribution: DistributionServer, proxies: Callable[..., FaultProxy], repo: str
) -> None:
    proxy = proxies(distribution.url)
    proxy.fault(path="/manifests/", delay_headers=3.0)
    fast = settings(proxy.url, timeouts={"response_headers": "300ms"})
    async with RegistryClient(fast) as client:
        started = time.monotonic()
        with pytest.raises(Unavailable, match=r"no response headers within 0\.3s"):
            await client.get_manifest(repo, "v1")
        assert time.monotonic() - started < 1.5


async def test_tls_needs_a_trusted_certificate(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path / "tls")
    server = start_server(
        request,
        tmp_path / "server",
        config={"http": {"tls_cert": str(cert), "tls_key": str(key)}},
        scheme="https",
    )
    async with RegistryClient(settings(server.url)) as client:
        with pytest.raises(Unavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await client.ping()
    for trusted in (settings(server.url, ca_bundle=str(cert)), settings(server.url, insecure=True)):
        async with RegistryClient(trusted) as client:
            await client.ping()


async def test_every_request_is_reported_with_the_rate_limit(
    distribution: DistributionServer, proxies: Callable[..., FaultProxy], repo: str
) -> None:
    proxy = proxies(distribution.url)
    limits = {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "76;w=21600"}
    proxy.fault(path="/manifests/", headers=limits)
    events: list[UpstreamRequest] = []
    async with RegistryClient(settings(proxy.url), name="hub", on_request=events.append) as client:
        manifest = await client.get_manifest(repo, "v1")
        await client.list_tags(repo)
        assert client.rate_limit == RateLimit(100, 76, 21600)
    assert [(e.upstream, e.operation, e.method, e.status) for e in events] == [
        ("hub", "manifest_get", "GET", 200),
        ("hub", "tags", "GET", 200),
    ]
    assert events[0].bytes_received == manifest.size
    assert events[0].rate_limit == RateLimit(100, 76, 21600)
    assert events[1].rate_limit is None


async def test_a_failing_hook_does_not_fail_the_request(
    distribution: DistributionServer, repo: str
) -> None:
    def broken(event: UpstreamRequest) -> None:
        raise RuntimeError("metrics backend down")

    async with RegistryClient(settings(distribution.url), on_request=broken) as client:
        assert (await client.get_manifest(repo, "v1")).size > 0
