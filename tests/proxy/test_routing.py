"""Routing, pure: namespaces to upstreams, ``ns`` to namespaces, crafted input refused;
and the configuration rules of ``proxy``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from registry.config import Config, ProxyUpstreamConfig, load_config
from registry.preflight import check_files
from registry.proxy.routing import MIRROR_PATH, Routes
from registry.reference import is_valid_name


def upstream(name: str, url: str, **extra: Any) -> ProxyUpstreamConfig:
    return ProxyUpstreamConfig.model_validate({"name": name, "url": url, **extra})


ROUTES = Routes(
    [
        upstream("dockerhub", "https://registry-1.docker.io", default=True),
        upstream("ghcr", "https://ghcr.io"),
        upstream("vendor", "https://registry.vendor.example:5443", namespace="vendor/stable"),
    ]
)


@pytest.mark.parametrize(
    ("name", "upstream_name", "remote"),
    [
        ("dockerhub/alpine", "dockerhub", "library/alpine"),
        ("dockerhub/library/alpine", "dockerhub", "library/alpine"),
        ("dockerhub/bitnami/redis", "dockerhub", "bitnami/redis"),
        ("ghcr/org/tool", "ghcr", "org/tool"),
        ("ghcr/tool", "ghcr", "tool"),  # library/ is Docker Hub's
        ("vendor/stable/app", "vendor", "app"),
        ("vendor/stable/a/b", "vendor", "a/b"),
    ],
)
def test_names_under_a_namespace_route_to_its_upstream(
    name: str, upstream_name: str, remote: str
) -> None:
    route = ROUTES.for_name(name)
    assert route is not None
    assert (route.upstream.name, route.local, route.remote) == (upstream_name, name, remote)


@pytest.mark.parametrize(
    "name", ["dockerhub", "ghcr", "vendor/stable", "vendor/app", "vendorx/stable/a", "local/app"]
)
def test_names_outside_the_namespaces_are_local(name: str) -> None:
    assert ROUTES.for_name(name) is None


@pytest.mark.parametrize(
    ("ns", "path", "rewritten"),
    [
        ("docker.io", "library/alpine/manifests/3.20", "dockerhub/library/alpine/manifests/3.20"),
        ("registry-1.docker.io", "library/a/blobs/x:y", "dockerhub/library/a/blobs/x:y"),
        ("ghcr.io", "org/tool/tags/list", "ghcr/org/tool/tags/list"),
        ("registry.vendor.example:5443", "app/referrers/x:y", "vendor/stable/app/referrers/x:y"),
        ("GHCR.IO", "org/tool/manifests/v1", "ghcr/org/tool/manifests/v1"),
    ],
)  # fmt: skip
def test_ns_rewrites_onto_the_upstreams_namespace(ns: str, path: str, rewritten: str) -> None:
    assert ROUTES.rewrite("GET", f"/v2/{path}", f"ns={ns}").path == f"/v2/{rewritten}"


@pytest.mark.parametrize(
    ("method", "path", "query", "code"),
    [
        ("GET", "/v2/library/alpine/manifests/1", "ns=quay.io", "NAME_UNKNOWN"),
        ("GET", "/v2/library/alpine/manifests/1", "ns=registry.vendor.example", "NAME_UNKNOWN"),
        ("GET", "/v2/library/alpine/manifests/1", "ns=docker.io&ns=ghcr.io", "UNSUPPORTED"),
        ("GET", "/v2/library/../x/manifests/1", "ns=docker.io", "NAME_INVALID"),
        ("GET", "/v2/Library/manifests/1", "ns=docker.io", "NAME_INVALID"),
        ("PUT", "/v2/library/alpine/manifests/1", "ns=docker.io", "UNSUPPORTED"),
        ("POST", "/v2/library/alpine/blobs/uploads/", "ns=docker.io", "UNSUPPORTED"),
        ("GET", "/v2/_catalog", "ns=docker.io", "UNSUPPORTED"),
    ],
)
def test_ns_requests_a_mirror_does_not_serve_are_refused(
    method: str, path: str, query: str, code: str
) -> None:
    refusal = ROUTES.rewrite(method, path, query).refusal
    assert refusal is not None and refusal.code.code == code


def test_requests_without_ns_are_left_alone() -> None:
    assert ROUTES.rewrite("GET", "/v2/library/alpine/manifests/1", "n=1").path is None
    assert ROUTES.rewrite("GET", "/v2/", "ns=docker.io").refusal is None


def test_the_default_upstream_takes_bare_names_outside_the_namespaces() -> None:
    assert ROUTES.default_candidate("GET", "/v2/library/alpine/manifests/1") == "library/alpine"
    assert ROUTES.default_path("/v2/library/alpine/manifests/1") == (
        "/v2/dockerhub/library/alpine/manifests/1"
    )
    for method, path in (
        ("GET", "/v2/ghcr/org/tool/manifests/1"),  # under a namespace
        ("GET", "/v2/dockerhub/library/alpine/manifests/1"),
        ("PUT", "/v2/library/alpine/manifests/1"),
        ("GET", "/v2/_catalog"),
        ("GET", "/v2/library/alpine/blobs/uploads/abc"),
    ):
        assert ROUTES.default_candidate(method, path) is None, path
    assert (
        Routes([upstream("ghcr", "https://ghcr.io")]).default_candidate(
            "GET", "/v2/library/alpine/manifests/1"
        )
        is None
    )


_SEGMENT = st.text(alphabet="abcAZ09._-/%:@?#\\", min_size=0, max_size=12)


@given(
    name=st.lists(_SEGMENT, min_size=1, max_size=5).map("/".join),
    ns=st.sampled_from(["docker.io", "ghcr.io", "registry.vendor.example:5443", "x", ""]),
    rest=st.sampled_from(["manifests/v1", "blobs/sha256:ab", "tags/list", "referrers/x", "x"]),
)
def test_nothing_crafted_escapes_the_namespace_of_its_ns(name: str, ns: str, rest: str) -> None:
    rewrite = ROUTES.rewrite("GET", f"/v2/{name}/{rest}", f"ns={ns}")
    if rewrite.path is None:
        assert rewrite.refusal is not None
        return
    upstream = ROUTES.for_ns(ns)
    assert upstream is not None
    m = MIRROR_PATH.match(rewrite.path)
    assert m is not None
    local = m.group("name")
    assert is_valid_name(local) and local.startswith(upstream.namespace + "/")
    route = ROUTES.for_name(local)
    assert route is not None and route.upstream is upstream
    assert is_valid_name(route.remote) and ".." not in route.remote


@given(name=st.lists(_SEGMENT, min_size=1, max_size=5).map("/".join))
def test_a_routed_name_is_valid_and_its_remote_is_what_follows_the_namespace(name: str) -> None:
    route = ROUTES.for_name(name)
    if route is None:
        return
    rest = name.removeprefix(route.upstream.namespace + "/")
    assert is_valid_name(name) and is_valid_name(route.remote)
    assert route.remote in (rest, f"library/{rest}")


# ---------------------------------------------------------------------- configuration


def config(*upstreams: dict[str, Any]) -> Config:
    return Config.model_validate({"proxy": {"upstreams": list(upstreams)}})


def up(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "url": f"https://{name}.io", **extra}


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([up("a"), up("a", url="https://b.io")], "used twice"),
        ([up("a", namespace="x"), up("b", namespace="x/y")], "overlaps"),
        ([up("a"), up("b", hosts=["a.io"])], "routed to"),
        ([up("a", default=True), up("b", default=True)], "at most one"),
        ([up("Hub")], "lowercase"),
        ([up("a", namespace="A/b")], "not a repository name"),
        ([up("a", url="https://a.io/v2")], "root"),
        ([up("a", hosts=["https://a.io"])], "host"),
        ([up("a", tag_ttl="soon")], "duration"),
    ],
)
def test_configuration_rules(entries: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        config(*entries)


def test_the_upstream_list_comes_from_the_environment_and_credentials_stay_secret() -> None:
    loaded = load_config(
        environ={
            "REGISTRY_PROXY_UPSTREAMS": "[{name: hub, url: 'https://registry-1.docker.io', "
            "credentials: {username: bot, password: hunter22}}]",
            "REGISTRY_PROXY_MAX_SIZE": "2TiB",
        }
    )
    (hub,) = loaded.proxy.upstreams
    assert hub.ns_hosts == ("registry-1.docker.io", "docker.io", "index.docker.io")
    assert hub.library_prefix and loaded.proxy.max_size == 2 * 1024**4
    assert "hunter22" not in repr(loaded) and "hunter22" not in str(loaded.model_dump())


def test_check_config_names_unreadable_password_files_and_ca_bundles(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate")
    loaded = config(
        up("a", credentials={"username": "u", "password_file": str(tmp_path / "missing")}),
        up("b", credentials={"username": "u", "password_env": "PROXY_TEST_UNSET_VARIABLE"}),
        up("c", ca_bundle=str(tmp_path / "ca.pem")),
        up("d", credentials={"username": "u", "password": "fine"}),
    )
    found = {f.loc: f.message for f in check_files(loaded) if f.loc[0] == "proxy"}
    assert set(found) == {
        ("proxy", "upstreams", 0, "credentials", "password_file"),
        ("proxy", "upstreams", 1, "credentials", "password_env"),
        ("proxy", "upstreams", 2, "ca_bundle"),
    }
    assert "does not exist" in found[("proxy", "upstreams", 0, "credentials", "password_file")]
