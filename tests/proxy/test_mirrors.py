"""Docker's registry-mirrors (bare names, no ``ns``) reach the upstream marked default,
unless the name is stored here; and the configuration examples of docs/proxy.md load as
written (the containerd and podman ones run for real in test_clients.py)."""

from __future__ import annotations

import json
from collections.abc import Callable

import yaml

from registry.config import Config
from registry.context import current
from registry.store import RegistryStore
from registry.store.changes import Change
from tests.asgi_registry import InProcessRegistry
from tests.images import OCI_MANIFEST, image, push_image
from tests.proxy.conftest import Upstreams, repo_name, upstream_entry
from tests.proxy.test_clients import doc_block

MakeCache = Callable[..., InProcessRegistry]


def test_bare_names_go_to_the_default_upstream_unless_stored_here(
    upstreams: Upstreams, in_process_cache: MakeCache
) -> None:
    hub = upstream_entry("hub", upstreams.dist.url, hosts=["hub.invalid"], default=True)
    cache = in_process_cache(hub)
    remote, mine = repo_name("mirrored"), repo_name("mirrored")
    img, local = image(layers=1), image(layers=1)
    upstreams.seed("dist", remote, img)
    with cache.client() as c:
        push_image(c, mine, local, "v1")
        upstreams.dist.clear()
        r = c.get(f"/v2/{remote}/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200 and r.content == img.manifest
        for digest, data in img.blobs.items():
            assert c.get(f"/v2/{remote}/blobs/{digest}").content == data
        assert f"hub/{remote}" in c.get("/v2/_catalog").json()["repositories"]
        assert c.get(f"/v2/{mine}/manifests/v1").content == local.manifest
        assert c.get(f"/v2/{mine}/blobs/{next(iter(local.blobs))}").status_code == 200
    assert upstreams.dist.count("GET", f"/v2/{remote}/") == 1 + len(img.blobs)
    assert upstreams.dist.count(None, mine) == 0


def test_the_documented_configurations_load() -> None:
    blocks = [
        yaml.safe_load(doc_block("proxy:")),
        yaml.safe_load(doc_block("auth:")),
    ]
    for block in blocks:
        Config.model_validate(block)
    daemon = json.loads(doc_block("{"))
    assert daemon["registry-mirrors"] == ["http://cache.example.com:5000"]


def test_store_writes_of_the_cache_are_made_as_the_proxy(
    upstreams: Upstreams, in_process_cache: MakeCache
) -> None:
    """Events, quotas and immutable tags tell cache fills from client pushes by origin."""
    cache = in_process_cache()
    seen: list[tuple[str, str]] = []

    class Listener:
        async def before(self, change: Change) -> None:
            seen.append((type(change).__name__, current().origin))

    store: RegistryStore = cache.app.state.store
    store.changes.listen(Listener())
    repo = repo_name()
    img = image(layers=1)
    upstreams.seed("dist", repo, img)
    with cache.client() as c:
        assert c.get(f"/v2/dist/{repo}/manifests/v1").status_code == 200
        for digest in img.blobs:
            assert c.get(f"/v2/dist/{repo}/blobs/{digest}").status_code == 200
        push_image(c, repo_name("local"), image(layers=1), "v1")
    fills = [s for s in seen if s[1] == "proxy"]
    pushes = [s for s in seen if s[1] == "client"]
    assert ("ManifestPushed", "proxy") in fills and ("BlobPushed", "proxy") in fills
    assert len([s for s in fills if s[0] == "BlobPushed"]) == len(img.blobs)
    assert ("ManifestPushed", "client") in pushes and ("BlobPushed", "client") in pushes


def test_docker_hubs_ratelimit_remaining_is_a_metric(
    upstreams: Upstreams, in_process_cache: MakeCache
) -> None:
    cache = in_process_cache()
    repo = repo_name()
    upstreams.seed("dist", repo, image(layers=1))
    limits = {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "76;w=21600"}
    upstreams.dist.fault(path="/manifests/", headers=limits)
    with cache.client() as c:
        assert c.get(f"/v2/dist/{repo}/manifests/v1").status_code == 200
        metrics = c.get("/metrics").text
    assert 'registry_proxy_ratelimit_remaining{upstream="dist"} 76.0' in metrics
