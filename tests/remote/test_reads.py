"""Reads from real remotes (this registry with token auth, and CNCF distribution 2.8):
manifests of every type as exact bytes, blob ranges, paginated tags and catalog, and
referrers from the API or from the referrers tag schema."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from registry.reference import ByteRange, parse_digest
from registry.remote import NotFound, RegistryClient, RemoteSettings, referrers_tag
from tests.auth.conftest import unique
from tests.distribution import DistributionServer
from tests.faults import FaultProxy
from tests.images import OCI_INDEX, Image, descriptor, image, index, push_image
from tests.remote.remotes import digests, seed, settings
from tests.server import RegistryServer

pytestmark = pytest.mark.anyio

Remote = RegistryServer | DistributionServer


@pytest.fixture(params=["registry", "distribution"])
def remote(
    request: pytest.FixtureRequest,
    token_registry: RegistryServer,
    distribution: DistributionServer,
) -> Remote:
    return token_registry if request.param == "registry" else distribution


def remote_settings(server: Remote, url: str | None = None) -> RemoteSettings:
    if isinstance(server, DistributionServer):
        return settings(url or server.url)
    return settings(url or server.url, "admin")


@pytest.mark.parametrize(
    "make",
    [
        lambda: image(layers=2),
        lambda: image(layers=1, docker=True),
        lambda: index([image(layers=1), image(layers=1)]),
        lambda: index([image(layers=1, docker=True)], docker=True),
    ],
    ids=["oci-image", "docker-image", "oci-index", "docker-list"],
)
async def test_manifest_exact_bytes_by_tag_and_digest(
    remote: Remote, make: Callable[[], Image]
) -> None:
    img = make()
    repo = unique("reads")
    seed(remote, repo, img)
    async with RegistryClient(remote_settings(remote)) as client:
        by_tag = await client.get_manifest(repo, "v1")
        by_digest = await client.get_manifest(repo, parse_digest(img.digest))
        head = await client.head_manifest(repo, "v1")
    for got in (by_tag, by_digest):
        assert got.body == img.manifest
        assert got.media_type == img.media_type
        assert str(got.digest) == img.digest
    assert head == by_tag.info


async def test_unknown_manifest_and_blob_are_not_found(remote: Remote) -> None:
    repo = unique("reads")
    seed(remote, repo, image(layers=1))
    missing = parse_digest("sha256:" + "0" * 64)
    async with RegistryClient(remote_settings(remote)) as client:
        with pytest.raises(NotFound) as exc:
            await client.get_manifest(repo, "nope")
        assert exc.value.code == "MANIFEST_UNKNOWN"
        with pytest.raises(NotFound):
            await client.head_manifest(repo, missing)
        assert not await client.blob_exists(repo, missing)
        with pytest.raises(NotFound):
            await client.open_blob(repo, missing)


async def test_blob_ranges(remote: Remote) -> None:
    img = image(layers=1, layer_size=100_000)
    repo = unique("reads")
    seed(remote, repo, img)
    digest, data = max(digests(img), key=lambda d: len(d[1]))
    cases = [ByteRange(0, 9), ByteRange(1000, 50_999), ByteRange(len(data) - 5, len(data) - 1)]
    async with RegistryClient(remote_settings(remote)) as client:
        for r in cases:
            async with await client.open_blob(repo, digest, size=len(data), byte_range=r) as s:
                assert s.partial and s.status == 206 and s.size == r.length
                assert b"".join([c async for c in s]) == data[r.start : r.end + 1]
        # A range past the end is cut at the end (RFC 9110).
        r = ByteRange(len(data) - 3, len(data) + 100)
        async with await client.open_blob(repo, digest, byte_range=r) as s:
            assert b"".join([c async for c in s]) == data[-3:]


async def test_range_ignored_by_the_remote_is_cut_from_the_whole_body(
    distribution: DistributionServer, proxies: Callable[..., FaultProxy]
) -> None:
    img = image(layers=1, layer_size=100_000)
    repo = unique("reads")
    seed(distribution, repo, img)
    digest, data = max(digests(img), key=lambda d: len(d[1]))
    proxy = proxies(distribution.url)
    proxy.fault(method="GET", path="/blobs/", strip_request=("range",), times=None)
    r = ByteRange(5000, 9999)
    async with RegistryClient(settings(proxy.url)) as client:
        stream = await client.open_blob(repo, digest, size=len(data), byte_range=r)
        async with stream:
            assert stream.status == 200 and stream.partial and stream.size == r.length
            assert b"".join([c async for c in stream]) == data[5000:10000]


async def test_tags_follow_the_link_header_page_by_page(
    remote: Remote, proxies: Callable[..., FaultProxy]
) -> None:
    img = image(layers=1)
    repo = unique("tags")
    seed(remote, repo, img, tag=None)
    tags = sorted(f"t{i:02d}" for i in range(7))
    seed_tags(remote, repo, img, tags)
    proxy = proxies(remote.url)
    async with RegistryClient(remote_settings(remote, proxy.url)) as client:
        await client.ping()
        proxy.clear()
        listed = await client.list_tags(repo, page_size=3)
        first = await client.tags_page(repo, n=3)
    assert sorted(listed) == tags and len(listed) == len(tags)
    if isinstance(remote, DistributionServer):
        # distribution 2.8 neither pages nor sorts tags (both came with v3): one answer.
        assert first.next is None and sorted(first.items) == tags
        assert proxy.count("GET", "/tags/list") == 2
        return
    assert listed == tags
    assert first.items == tags[:3] and first.next is not None
    assert proxy.count("GET", "/tags/list") == 3 + 1


def seed_tags(remote: Remote, repo: str, img: Image, tags: list[str]) -> None:
    for tag in tags:
        seed(remote, repo, Image(img.manifest, img.media_type), tag)


async def test_catalog_pages(distribution: DistributionServer) -> None:
    prefix = unique("catalog")
    names = [f"{prefix}/r{i}" for i in range(5)]
    for name in names:
        seed(distribution, name, image(layers=1))
    async with RegistryClient(settings(distribution.url)) as client:
        everything = await client.list_catalog(page_size=2)
        page = await client.catalog_page(n=2)
    assert set(names) <= set(everything)
    assert everything == sorted(everything)
    assert len(page.items) == 2 and page.next is not None


async def test_catalog_of_this_registry_needs_the_catalog_scope(
    token_registry: RegistryServer,
) -> None:
    repo = unique("team-a")
    seed(token_registry, repo, image(layers=1))
    async with RegistryClient(settings(token_registry.url, "admin")) as client:
        assert repo in await client.list_catalog(page_size=50)


async def test_referrers_from_the_api(token_registry: RegistryServer) -> None:
    repo = unique("team-a")
    subject = image(layers=1)
    seed(token_registry, repo, subject)
    sig = image(layers=1, subject=subject, artifact_type="application/vnd.example.sig")
    sbom = image(layers=1, subject=subject, artifact_type="application/vnd.example.sbom")
    seed(token_registry, repo, sig, tag=None)
    seed(token_registry, repo, sbom, tag=None)
    async with RegistryClient(settings(token_registry.url, "admin")) as client:
        got = await client.get_referrers(repo, parse_digest(subject.digest))
        only = await client.get_referrers(
            repo, parse_digest(subject.digest), artifact_type="application/vnd.example.sbom"
        )
        none = await client.get_referrers(repo, parse_digest(sig.digest))
    assert got.source == "api"
    assert {d["digest"] for d in got.manifests} == {sig.digest, sbom.digest}
    assert [d["digest"] for d in only.manifests] == [sbom.digest]
    assert none.manifests == []


def referrers_index(*referrers: Image) -> Image:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            descriptor(
                r.media_type, r.manifest, artifactType=json.loads(r.manifest)["artifactType"]
            )
            for r in referrers
        ],
    }
    return Image(json.dumps(doc).encode(), OCI_INDEX)


async def test_referrers_fall_back_to_the_tag_schema(
    distribution: DistributionServer, proxies: Callable[..., FaultProxy]
) -> None:
    """distribution 2.8 has no referrers API (404): the client reads the
    ``sha256-<hex>`` tag that clients without the API maintain."""
    repo = unique("referrers")
    subject = image(layers=1)
    seed(distribution, repo, subject)
    sig = image(layers=1, subject=subject, artifact_type="application/vnd.example.sig")
    sbom = image(layers=1, subject=subject, artifact_type="application/vnd.example.sbom")
    seed(distribution, repo, sig, tag=None)
    seed(distribution, repo, sbom, tag=None)
    digest = parse_digest(subject.digest)
    proxy = proxies(distribution.url)
    async with RegistryClient(settings(proxy.url)) as client:
        assert (await client.get_referrers(repo, digest)).manifests == []  # no tag yet
        seed(distribution, repo, referrers_index(sig, sbom), tag=referrers_tag(digest))
        got = await client.get_referrers(repo, digest)
        only = await client.get_referrers(repo, digest, artifact_type="application/vnd.example.sig")
    assert got.source == "tag"
    assert [d["digest"] for d in got.manifests] == [sig.digest, sbom.digest]
    assert [d["digest"] for d in only.manifests] == [sig.digest]
    assert proxy.count("GET", f"/referrers/{digest}") == 3
    assert proxy.count("GET", f"/manifests/{referrers_tag(digest)}") == 3


async def test_a_referrers_tag_holding_the_subject_is_not_a_referrers_list(
    distribution: DistributionServer,
) -> None:
    """A registry that reads ``sha256-<hex>`` as the digest answers the subject itself;
    its children are not referrers (oras-go's bug)."""
    repo = unique("referrers")
    subject = index([image(layers=1), image(layers=1)])
    seed(distribution, repo, subject)
    digest = parse_digest(subject.digest)
    with distribution.client() as c:
        push_image(c, repo, Image(subject.manifest, subject.media_type), referrers_tag(digest))
    async with RegistryClient(settings(distribution.url)) as client:
        got = await client.get_referrers(repo, digest)
    assert got.manifests == [] and got.source == "tag"
