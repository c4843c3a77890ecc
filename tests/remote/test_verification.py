"""Content that is not what was asked for: a blob cut, shortened with a matching
Content-Length (a short 200), padded or corrupted by a proxy in front of distribution
never reads as complete, and a manifest whose bytes do not match its digest is refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from registry.reference import parse_digest
from registry.remote import RegistryClient, VerificationError
from tests.auth.conftest import unique
from tests.distribution import DistributionServer
from tests.faults import FaultProxy
from tests.images import image, sha256
from tests.remote.remotes import digests, seed, settings

pytestmark = pytest.mark.anyio

SIZE = 1024 * 1024


@pytest.fixture(scope="module")
def big_blob(distribution: DistributionServer) -> tuple[str, bytes]:
    img = image(layers=1, layer_size=SIZE)
    repo = unique("verify")
    seed(distribution, repo, img)
    _, data = max(digests(img), key=lambda d: len(d[1]))
    return repo, data


FAULTS = {
    "cut": {"cut_after": SIZE // 2},
    "short-200": {"truncate": 1000},
    "padded": {"pad": b"\0" * 1000},
    "corrupted": {"corrupt": True},
}


# Pieces hashed on the event loop, and pieces hashed in a thread while the next arrive.
@pytest.mark.parametrize("piece", [64 * 1024, 256 * 1024], ids=["loop-hashed", "thread-hashed"])
@pytest.mark.parametrize("known_size", [True, False], ids=["size-known", "size-unknown"])
@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
async def test_bad_blob_body_never_reads_as_complete(
    distribution: DistributionServer,
    proxies: Callable[..., FaultProxy],
    big_blob: tuple[str, bytes],
    fault: str,
    known_size: bool,
    piece: int,
) -> None:
    repo, data = big_blob
    digest = parse_digest(sha256(data))
    proxy = proxies(distribution.url)
    proxy.fault(method="GET", path="/blobs/", **FAULTS[fault])
    received = bytearray()
    async with RegistryClient(settings(proxy.url)) as client:
        with pytest.raises(VerificationError) as exc:
            stream = await client.open_blob(
                repo, digest, size=len(data) if known_size else None, chunk_size=piece
            )
            async with stream:
                async for chunk in stream:
                    received += chunk
        # The consumer never holds the whole body: the last piece is held back until
        # the size and digest verified.
        assert len(received) < len(data)
        assert exc.value.operation == "blob_get"
        # The fault was once: the next read is whole and verified.
        async with await client.open_blob(repo, digest, size=len(data)) as stream:
            assert b"".join([c async for c in stream]) == data


async def test_announced_size_that_differs_fails_before_any_byte(
    distribution: DistributionServer,
    proxies: Callable[..., FaultProxy],
    big_blob: tuple[str, bytes],
) -> None:
    repo, data = big_blob
    digest = parse_digest(sha256(data))
    proxy = proxies(distribution.url)
    proxy.fault(method="GET", path="/blobs/", pad=b"x")
    async with RegistryClient(settings(proxy.url)) as client:
        with pytest.raises(VerificationError, match="announces"):
            await client.open_blob(repo, digest, size=len(data))


@pytest.mark.parametrize("by", ["tag", "digest"])
async def test_corrupted_manifest_is_refused(
    distribution: DistributionServer, proxies: Callable[..., FaultProxy], by: str
) -> None:
    img = image(layers=1)
    repo = unique("verify")
    seed(distribution, repo, img)
    proxy = proxies(distribution.url)
    proxy.fault(method="GET", path="/manifests/", corrupt=True)
    reference = "v1" if by == "tag" else img.digest
    async with RegistryClient(settings(proxy.url)) as client:
        with pytest.raises(VerificationError) as exc:
            await client.get_manifest(repo, reference)
        assert exc.value.operation == "manifest_get"
        assert (await client.get_manifest(repo, reference)).body == img.manifest
