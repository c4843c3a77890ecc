"""Writes to real remotes (this registry with token auth, and distribution 2.8): blob
pushes, mounts, manifests as exact bytes, deletes, the bandwidth cap, and a chunked push
that resumes from the acknowledged offset after its connection is cut -- in the same
client, and in a fresh one that only has the persisted session."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Callable

import pytest

from registry.reference import parse_digest
from registry.remote import (
    NotFound,
    RegistryClient,
    RemoteSettings,
    Unavailable,
    Unsupported,
    UploadSession,
)
from tests.auth.conftest import unique
from tests.distribution import DistributionServer
from tests.faults import FaultProxy
from tests.images import image, sha256
from tests.remote.remotes import digests, settings
from tests.server import RegistryServer

pytestmark = pytest.mark.anyio

Remote = RegistryServer | DistributionServer
MiB = 1024 * 1024


@pytest.fixture(params=["registry", "distribution"])
def remote(
    request: pytest.FixtureRequest,
    token_registry: RegistryServer,
    distribution: DistributionServer,
) -> Remote:
    return token_registry if request.param == "registry" else distribution


def writer(
    server: Remote, url: str | None = None, delete: bool = False
) -> tuple[RemoteSettings, str]:
    """Settings of a user who may push (and delete), and a fresh repository for them."""
    if isinstance(server, DistributionServer):
        return settings(url or server.url), unique("writes")
    if delete:
        return settings(url or server.url, "carol"), unique("team-b")  # a maintainer
    return settings(url or server.url, "alice"), unique("team-a")  # a writer


def source_of(data: bytes, piece: int = 256 * 1024) -> Callable[[int], AsyncIterator[bytes]]:
    async def pieces(offset: int) -> AsyncIterator[bytes]:
        for i in range(offset, len(data), piece):
            yield data[i : i + piece]

    return pieces


async def read_blob(client: RegistryClient, repo: str, digest: str, size: int) -> bytes:
    async with await client.open_blob(repo, parse_digest(digest), size=size) as stream:
        return b"".join([c async for c in stream])


async def test_push_image_with_exact_manifest_bytes(remote: Remote) -> None:
    img = image(layers=2)
    # Formatting of its own: the digest is of these bytes, never of a re-serialisation.
    body = json.dumps(json.loads(img.manifest), indent=5).encode() + b"\n"
    conf, repo = writer(remote)
    async with RegistryClient(conf) as client:
        for digest, data in digests(img):
            assert not await client.blob_exists(repo, digest)
            await client.push_blob(repo, digest, data, len(data))
            assert await client.blob_exists(repo, digest)
        pushed = await client.put_manifest(repo, "v1", body, img.media_type)
        assert str(pushed) == sha256(body)
        got = await client.get_manifest(repo, pushed)
        assert (got.body, got.media_type) == (body, img.media_type)
        assert (await client.head_manifest(repo, "v1")).digest == pushed


async def test_cross_repository_mount(remote: Remote) -> None:
    img = image(layers=1)
    conf, source = writer(remote)
    target = source + "-copy"
    [(digest, data), *_] = digests(img)
    async with RegistryClient(conf) as client:
        await client.push_blob(source, digest, data, len(data))
        assert await client.mount_blob(target, digest, source)
        assert await read_blob(client, target, str(digest), len(data)) == data
        missing = parse_digest("sha256:" + "1" * 64)
        assert not await client.mount_blob(target, missing, source)


async def test_deletes(remote: Remote) -> None:
    img = image(layers=1)
    conf, repo = writer(remote, delete=True)
    async with RegistryClient(conf) as client:
        for digest, data in digests(img):
            await client.push_blob(repo, digest, data, len(data))
        digest = await client.put_manifest(repo, "v1", img.manifest, img.media_type)
        await client.put_manifest(repo, "v2", img.manifest, img.media_type)
        if isinstance(remote, DistributionServer):
            with pytest.raises(Unsupported):  # tag deletion came with distribution-spec 1.1
                await client.delete_tag(repo, "v2")
        else:
            await client.delete_tag(repo, "v2")
            assert await client.list_tags(repo) == ["v1"]
        await client.delete_manifest(repo, digest)
        with pytest.raises(NotFound):
            await client.get_manifest(repo, digest)


async def test_chunked_push_resumes_in_a_fresh_client_from_the_acknowledged_offset(
    remote: Remote, proxies: Callable[..., FaultProxy]
) -> None:
    """As after a kill -9: the first client dies with its third PATCH half sent; a new
    client gets only the persisted session and sends what the remote lacks."""
    data = os.urandom(5 * MiB)
    digest = parse_digest(sha256(data))
    proxy = proxies(remote.url)
    proxy.fault(method="PATCH", path="/blobs/uploads/", skip=2, cut_request_after=300_000)
    conf, repo = writer(remote, proxy.url)
    persisted: list[UploadSession] = []
    async with RegistryClient(conf) as first:
        with pytest.raises(Unavailable):
            await first.push_blob_chunked(
                repo,
                digest,
                len(data),
                source_of(data),
                chunk_size=MiB,
                on_progress=persisted.append,
                retries=0,
            )
    saved = persisted[-1]
    assert saved.offset == 2 * MiB
    async with RegistryClient(conf) as second:
        resumed = UploadSession(saved.repository, saved.location, saved.offset)
        acknowledged: list[UploadSession] = []
        await second.push_blob_chunked(
            repo,
            digest,
            len(data),
            source_of(data),
            chunk_size=MiB,
            session=resumed,
            on_progress=acknowledged.append,
        )
        assert await read_blob(second, repo, str(digest), len(data)) == data
    assert proxy.count("GET", "/blobs/uploads/") >= 1  # the status asked before resuming
    sent = proxy.request_bytes["PATCH"] + proxy.request_bytes["PUT"]
    if isinstance(remote, DistributionServer):
        # distribution 2.8 cancels a session whose data moved past its Location's state
        # (the cut PATCH left bytes): the push starts over in a new session.
        assert acknowledged[0].offset == 0 and acknowledged[0].location != saved.location
        assert sent < 2 * len(data) + 300_000 + 1000
        return
    assert acknowledged[0].offset >= 2 * MiB  # where the remote stood
    assert sent < len(data) + 300_000 + 1000  # the interrupted chunk at most, not all again


async def test_chunked_push_retries_in_place(
    remote: Remote, proxies: Callable[..., FaultProxy]
) -> None:
    data = os.urandom(3 * MiB + 12345)
    digest = parse_digest(sha256(data))
    proxy = proxies(remote.url)
    proxy.fault(method="PATCH", path="/blobs/uploads/", skip=1, cut_request_after=100_000)
    conf, repo = writer(remote, proxy.url)
    async with RegistryClient(conf) as client:
        await client.push_blob_chunked(
            repo, digest, len(data), source_of(data), chunk_size=MiB, retry_delay=0
        )
        assert await read_blob(client, repo, str(digest), len(data)) == data
    # distribution 2.8 drops a session with a cut PATCH in it: that push starts over.
    again = len(data) if isinstance(remote, DistributionServer) else 0
    assert proxy.request_bytes["PATCH"] < len(data) + 100_000 + again + 1000


async def test_bandwidth_cap(distribution: DistributionServer) -> None:
    data = os.urandom(3 * MiB)
    digest = parse_digest(sha256(data))
    repo = unique("writes")
    # 2 MiB/s with a 2 MiB burst: 3 MiB each way take at least half a second.
    async with RegistryClient(settings(distribution.url), max_bytes_per_second=2 * MiB) as client:
        started = time.monotonic()
        await client.push_blob(repo, digest, data, len(data))  # bytes: sent in metered pieces
        pushed = time.monotonic() - started
        assert pushed >= 0.45
        started = time.monotonic()
        assert await read_blob(client, repo, str(digest), len(data)) == data
        assert time.monotonic() - started >= 0.45
