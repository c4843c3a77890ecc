"""Docker's registry-mirrors (bare names, no ``ns``) reach the upstream marked default,
unless the name is stored here; and the configuration examples of docs/proxy.md load as
written (the containerd and podman ones run for real in test_clients.py)."""

from __future__ import annotations

import json
from collections.abc import Callable

import yaml

from registry.config import Config
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
