"""Auth against real remotes: the Docker token flow of this registry (token requests
counted by a proxy in front of it), HTTP Basic of CNCF distribution, and redirects that
never take Authorization to another host."""

from __future__ import annotations

import asyncio
import base64
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from registry.remote import (
    Denied,
    RegistryClient,
    Unauthorized,
    UpstreamRequest,
)
from tests.auth.conftest import PASSWORD, auth_section, get_token, unique
from tests.conftest import start_server
from tests.distribution import PASSWORD as DIST_PASSWORD
from tests.distribution import USER as DIST_USER
from tests.distribution import DistributionServer
from tests.faults import FaultProxy
from tests.images import image
from tests.remote.remotes import digests, seed, settings
from tests.server import RegistryServer

pytestmark = pytest.mark.anyio

TOKEN_PATH = "/auth/token"


async def test_one_token_per_scope_shared_by_requests(
    token_registry: RegistryServer, proxies: Callable[..., FaultProxy]
) -> None:
    repo_a, repo_b = unique("team-a"), unique("team-a")
    img = image(layers=3)
    seed(token_registry, repo_a, img)
    seed(token_registry, repo_b, img)
    proxy = proxies(token_registry.url)
    async with RegistryClient(settings(proxy.url, "alice")) as client:
        for _ in range(3):
            await client.get_manifest(repo_a, "v1")
            for digest, data in digests(img):
                assert await client.head_blob(repo_a, digest) == len(data)
        assert proxy.count("GET", TOKEN_PATH) == 1
        await client.get_manifest(repo_b, "v1")
        assert proxy.count("GET", TOKEN_PATH) == 2  # another repository, another scope
        # Only the very first request went without a token.
        assert proxy.count(None, "/v2/") == 3 * (1 + len(img.blobs)) + 1 + 1


async def test_concurrent_requests_share_one_token_fetch(
    token_registry: RegistryServer, proxies: Callable[..., FaultProxy]
) -> None:
    repo = unique("team-a")
    img = image(layers=1)
    seed(token_registry, repo, img)
    proxy = proxies(token_registry.url)
    async with RegistryClient(settings(proxy.url, "alice")) as client:
        got = await asyncio.gather(*(client.head_manifest(repo, "v1") for _ in range(20)))
    assert {g.digest for g in got} == {got[0].digest}
    assert proxy.count("GET", TOKEN_PATH) == 1


async def test_token_is_refetched_after_it_expires(
    token_registry: RegistryServer, proxies: Callable[..., FaultProxy]
) -> None:
    repo = unique("team-a")
    seed(token_registry, repo, image(layers=1))
    proxy = proxies(token_registry.url)
    now = [1000.0]
    async with RegistryClient(settings(proxy.url, "alice"), clock=lambda: now[0]) as client:
        await client.head_manifest(repo, "v1")
        now[0] += 200  # the registry's tokens live 300 s
        await client.head_manifest(repo, "v1")
        assert proxy.count("GET", TOKEN_PATH) == 1
        now[0] += 100
        await client.head_manifest(repo, "v1")
        assert proxy.count("GET", TOKEN_PATH) == 2


async def test_a_token_the_registry_no_longer_accepts_is_refetched_once(
    request: pytest.FixtureRequest, tmp_path: Path, proxies: Callable[..., FaultProxy]
) -> None:
    key = tmp_path / "token.pem"
    server = start_server(
        request,
        tmp_path,
        config={"auth": auth_section(tmp_path, "token", token={"key_file": str(key)})},
    )
    repo = unique("team-a")
    seed(server, repo, image(layers=1))
    events: list[UpstreamRequest] = []
    async with RegistryClient(settings(server.url, "alice"), on_request=events.append) as client:
        await client.head_manifest(repo, "v1")
        server.stop()
        key.unlink()  # a new signing key: every token issued so far is invalid
        server.start()
        events.clear()
        await client.head_manifest(repo, "v1")
    assert [(e.operation, e.status) for e in events] == [
        ("manifest_head", 401),
        ("token", 200),
        ("manifest_head", 200),
    ]


async def test_anonymous_token_for_public_repositories(token_registry: RegistryServer) -> None:
    public, private = unique("public"), unique("team-a")
    img = image(layers=1)
    seed(token_registry, public, img)
    seed(token_registry, private, img)
    async with RegistryClient(settings(token_registry.url)) as client:
        for digest, data in digests(img):
            async with await client.open_blob(public, digest, size=len(data)) as stream:
                assert b"".join([c async for c in stream]) == data
        with pytest.raises(Unauthorized) as exc:
            await client.get_manifest(private, "v1")
    assert exc.value.status == 401 and exc.value.code == "UNAUTHORIZED"


async def test_denied_and_wrong_password(token_registry: RegistryServer) -> None:
    repo = unique("team-a")
    seed(token_registry, repo, image(layers=1))
    async with RegistryClient(settings(token_registry.url, "erin")) as client:
        with pytest.raises(Denied):
            await client.get_manifest(repo, "v1")
    wrong = "not-" + PASSWORD
    async with RegistryClient(settings(token_registry.url, "admin", wrong)) as client:
        with pytest.raises(Unauthorized) as exc:
            await client.ping()
    assert exc.value.operation == "token"
    assert wrong not in str(exc.value) and wrong not in repr(exc.value)
    assert wrong not in "".join(traceback.format_exception(exc.value))


async def test_basic_auth_against_distribution(
    distribution_basic: DistributionServer, proxies: Callable[..., FaultProxy]
) -> None:
    repo = unique("basic")
    img = image(layers=2)
    seed(distribution_basic, repo, img)
    proxy = proxies(distribution_basic.url)
    async with RegistryClient(settings(proxy.url, DIST_USER, DIST_PASSWORD)) as client:
        await client.ping()
        manifest = await client.get_manifest(repo, "v1")
        assert manifest.body == img.manifest
        for digest, data in digests(img):
            async with await client.open_blob(repo, digest) as stream:
                assert b"".join([c async for c in stream]) == data
    # One 401 taught the scheme; every request after it carried Basic up front.
    unauthenticated = [s for s in proxy.seen if "authorization" not in s.headers]
    assert len(unauthenticated) == 1
    for user, password in ((DIST_USER, "wrong"), (None, "")):
        async with RegistryClient(settings(distribution_basic.url, user, password)) as client:
            with pytest.raises(Unauthorized):
                await client.get_manifest(repo, "v1")


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_redirected_blob_get_carries_no_authorization(
    distribution_basic: DistributionServer, proxies: Callable[..., FaultProxy]
) -> None:
    """The blob host (another origin, as S3 or a CDN would be) authorizes the request by
    itself, as a presigned URL does; the client's credentials never reach it."""
    repo = unique("redirect")
    img = image(layers=2, layer_size=200_000)
    seed(distribution_basic, repo, img)
    blob_host = proxies(
        distribution_basic.url,
        host="localhost",
        add_headers={"Authorization": _basic(DIST_USER, DIST_PASSWORD)},
    )
    front = proxies(distribution_basic.url)
    front.fault(method="GET", path="/blobs/sha256:", redirect_to=blob_host.url, times=None)
    async with RegistryClient(settings(front.url, DIST_USER, DIST_PASSWORD)) as client:
        await client.ping()
        for digest, data in digests(img):
            async with await client.open_blob(repo, digest, size=len(data)) as stream:
                assert b"".join([c async for c in stream]) == data
    assert blob_host.count("GET", "/blobs/") == len(img.blobs)
    assert all("authorization" not in s.headers for s in blob_host.seen)
    front_gets = [s for s in front.seen if "/blobs/" in s.path]
    assert front_gets and all("authorization" in s.headers for s in front_gets)


async def test_redirect_target_that_challenges_gets_no_token(
    token_registry: RegistryServer, proxies: Callable[..., FaultProxy]
) -> None:
    """A redirect target that answers 401 with a challenge is not given credentials or
    a token (containerd's cross-host redirect bug): the client fails instead."""
    repo = unique("team-a")
    img = image(layers=1)
    seed(token_registry, repo, img)
    elsewhere = proxies(token_registry.url, host="localhost")
    front = proxies(token_registry.url)
    front.fault(method="GET", path="/blobs/sha256:", redirect_to=elsewhere.url, times=None)
    async with RegistryClient(settings(front.url, "alice")) as client:
        await client.get_manifest(repo, "v1")
        digest, data = digests(img)[0]
        with pytest.raises(Unauthorized):
            await client.open_blob(repo, digest, size=len(data))
    assert all("authorization" not in s.headers for s in elsewhere.seen)
    assert elsewhere.count("GET", TOKEN_PATH) == 0 and front.count("GET", TOKEN_PATH) == 1


async def test_redirect_with_a_presigned_token_succeeds(
    token_registry: RegistryServer, proxies: Callable[..., FaultProxy]
) -> None:
    repo = unique("team-a")
    img = image(layers=1, layer_size=50_000)
    seed(token_registry, repo, img)
    with token_registry.client() as c:
        token = get_token(c, f"repository:{repo}:pull", user="admin")
    blob_host = proxies(
        token_registry.url, host="localhost", add_headers={"Authorization": f"Bearer {token}"}
    )
    front = proxies(token_registry.url)
    front.fault(method="GET", path="/blobs/sha256:", redirect_to=blob_host.url, times=None)
    async with RegistryClient(settings(front.url, "alice")) as client:
        for digest, data in digests(img):
            async with await client.open_blob(repo, digest, size=len(data)) as stream:
                assert b"".join([c async for c in stream]) == data
    assert blob_host.count("GET", "/blobs/") == len(img.blobs)
    assert all("authorization" not in s.headers for s in blob_host.seen)
