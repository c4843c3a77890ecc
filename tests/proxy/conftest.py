"""Upstreams for the cache's tests -- this registry with token auth, and CNCF distribution
-- each behind a FaultProxy (faults where a test needs them; requests counted at the
upstream), and a cache (`registry serve`) that mirrors both. All are shared by the
session; each test uses its own repository names and clears the proxies' faults and
counts. Caches in this process over the memory driver serve the tests that need no
real server (``in_process_cache``)."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from storage_backends import Driver
from tests.asgi_registry import InProcessRegistry
from tests.auth.conftest import PASSWORD, auth_section, unique
from tests.conftest import start_server
from tests.distribution import DistributionServer, distribution  # noqa: F401 -- fixture
from tests.faults import FaultProxy
from tests.images import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Image, descriptor, sha256
from tests.remote.remotes import seed
from tests.server import RegistryServer

UPSTREAM_USER = "admin"  # the cache's credentials at the token-auth upstream


@dataclass
class Upstreams:
    registry: RegistryServer  # token auth: the cache logs in as UPSTREAM_USER
    distribution: DistributionServer  # anonymous, a foreign implementation
    reg: FaultProxy  # in front of ``registry``
    dist: FaultProxy  # in front of ``distribution``

    def front(self, which: str) -> FaultProxy:
        return self.reg if which == "reg" else self.dist

    def seed(self, which: str, repo: str, img: Image, tag: str | None = "v1") -> None:
        """Push straight to the upstream (not through its proxy: not counted)."""
        seed(self.registry if which == "reg" else self.distribution, repo, img, tag)


def upstream_entry(name: str, url: str, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "url": url, "tag_ttl": "1h", **extra}
    if name.startswith("reg") and "credentials" not in entry:
        entry["credentials"] = {"username": UPSTREAM_USER, "password": PASSWORD}
    return entry


def cache_config(upstreams: Upstreams, *entries: dict[str, Any], **proxy: Any) -> dict[str, Any]:
    """A cache of ``reg`` (namespace reg) and ``dist`` (namespace dist), plus ``entries``."""
    listed = [
        upstream_entry("reg", upstreams.reg.url),
        upstream_entry("dist", upstreams.dist.url),
        *entries,
    ]
    return {"proxy": {"upstreams": listed, **proxy}, "gc": {"enabled": False}}


@pytest.fixture(scope="session")
def upstreams(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    distribution: DistributionServer,  # noqa: F811 -- the fixture
) -> Iterator[Upstreams]:
    workdir = tmp_path_factory.mktemp("proxy-upstream")
    auth = auth_section(workdir, "token", token={"key_file": str(workdir / "token.pem")})
    registry = start_server(request, workdir, config={"auth": auth})
    reg, dist = FaultProxy(registry.url).start(), FaultProxy(distribution.url).start()
    try:
        yield Upstreams(registry, distribution, reg, dist)
    finally:
        reg.stop()
        dist.stop()


@pytest.fixture(autouse=True)
def _clean_proxies(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with no faults and zero counts on the shared proxies."""
    if "upstreams" in request.fixturenames:
        ups: Upstreams = request.getfixturevalue("upstreams")
        ups.reg.clear()
        ups.dist.clear()
    yield


@pytest.fixture(scope="session")
def cache(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, upstreams: Upstreams
) -> RegistryServer:
    """`registry serve` caching ``reg`` and ``dist``; ``ttl/...`` is ``reg`` again with a
    one-second tag TTL (its ns is a name no client sends)."""
    ttl = upstream_entry(
        "regttl", upstreams.reg.url, namespace="ttl", hosts=["ttl.invalid"], tag_ttl="1s"
    )
    config = cache_config(upstreams, ttl)
    return start_server(request, tmp_path_factory.mktemp("proxy-cache"), config=config)


@pytest.fixture
def in_process_cache(
    upstreams: Upstreams,
) -> Iterator[Callable[..., InProcessRegistry]]:
    """``in_process_cache(*entries, config=None, driver=None, **proxy)``: a started
    in-process cache of the shared upstreams (plus ``entries``; ``proxy`` settings and
    other ``config`` sections), stopped after the test."""
    started: list[InProcessRegistry] = []

    def make(
        *entries: dict[str, Any],
        config: dict[str, Any] | None = None,
        driver: Driver | None = None,
        **proxy: Any,
    ) -> InProcessRegistry:
        doc = cache_config(upstreams, *entries, **proxy)
        doc.update(config or {})
        registry = InProcessRegistry(doc, driver)
        registry.start()
        started.append(registry)
        return registry

    yield make
    for registry in started:
        registry.stop()


def repo_name(prefix: str = "proxy") -> str:
    return unique(prefix)


def tar_image(layers: int = 2, file_size: int = 100_000) -> Image:
    """An OCI image whose layers are real gzipped tars with their diff_ids in the config,
    as runtimes that unpack (podman) require."""
    blobs: list[bytes] = []
    diff_ids: list[str] = []
    for i in range(layers):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            data = os.urandom(file_size)
            info = tarfile.TarInfo(f"layer{i}/data.bin")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        raw = buffer.getvalue()
        diff_ids.append(sha256(raw))
        blobs.append(gzip.compress(raw, 1))
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "config": {},
        }
    ).encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, b) for b in blobs],
    }
    return Image(json.dumps(doc).encode(), OCI_MANIFEST, {sha256(b): b for b in [config, *blobs]})
