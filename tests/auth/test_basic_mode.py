"""HTTP Basic mode, in this process: the same policy, checked per request."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.asgi_registry import InProcessRegistry
from tests.auth.conftest import PASSWORD, unique
from tests.images import image, push_blob, push_image

CHALLENGE = 'Basic realm="registry",charset="UTF-8"'


def as_user(registry: InProcessRegistry, user: str, password: str = PASSWORD) -> httpx.Client:
    return registry.client(auth=(user, password))


def assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == CHALLENGE
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"


def assert_403(r: httpx.Response) -> None:
    assert r.status_code == 403, r.text
    assert r.json()["errors"][0]["code"] == "DENIED"


@pytest.fixture
def anonymous(basic_registry: InProcessRegistry) -> httpx.Client:
    return basic_registry.client()


def test_base_needs_a_login(basic_registry: InProcessRegistry, anonymous: httpx.Client) -> None:
    assert_401(anonymous.get("/v2/"))
    with as_user(basic_registry, "erin") as erin:
        assert erin.get("/v2/").status_code == 200


def test_wrong_password_is_401(basic_registry: InProcessRegistry) -> None:
    with as_user(basic_registry, "alice", "wrong") as c:
        assert_401(c.get("/v2/"))


def test_unknown_user_is_401(basic_registry: InProcessRegistry) -> None:
    with as_user(basic_registry, "mallory") as c:
        assert_401(c.get(f"/v2/{unique('public')}/tags/list"))


def test_a_bearer_token_is_not_basic_credentials(anonymous: httpx.Client) -> None:
    assert_401(anonymous.get("/v2/", headers={"Authorization": "Bearer abc"}))


def test_malformed_basic_credentials_are_401(anonymous: httpx.Client) -> None:
    assert_401(anonymous.get("/v2/", headers={"Authorization": "Basic !!!"}))


def test_writer_pushes_and_pulls(basic_registry: InProcessRegistry) -> None:
    name = unique("team-a")
    with as_user(basic_registry, "alice") as alice:
        digest = push_image(alice, name, image(layers=2, layer_size=200), tag="v1")
        assert alice.get(f"/v2/{name}/manifests/v1").headers["docker-content-digest"] == digest


def test_htpasswd_user_in_a_configured_group(basic_registry: InProcessRegistry) -> None:
    with as_user(basic_registry, "dave") as dave:
        push_image(dave, unique("team-a"), image(layers=1, layer_size=64), tag="v1")


def test_reader_cannot_push(basic_registry: InProcessRegistry) -> None:
    with as_user(basic_registry, "bob") as bob:
        assert_403(bob.post(f"/v2/{unique('team-a')}/blobs/uploads/"))


def test_user_without_a_role_cannot_read(basic_registry: InProcessRegistry) -> None:
    name = unique("team-b")
    with as_user(basic_registry, "carol") as carol:
        push_image(carol, name, image(layers=1, layer_size=64), tag="v1")
    with as_user(basic_registry, "alice") as alice:
        assert_403(alice.get(f"/v2/{name}/manifests/v1"))
        assert_403(alice.get(f"/v2/{name}/tags/list"))


def test_anonymous_pulls_public_without_credentials(
    basic_registry: InProcessRegistry, anonymous: httpx.Client
) -> None:
    name = unique("public")
    with as_user(basic_registry, "admin") as admin:
        digest = push_image(admin, name, image(layers=1, layer_size=64), tag="v1")
    assert anonymous.get(f"/v2/{name}/manifests/v1").headers["docker-content-digest"] == digest
    assert_401(anonymous.post(f"/v2/{name}/blobs/uploads/"))
    assert_401(anonymous.get(f"/v2/{unique('team-a')}/tags/list"))


def test_delete_needs_a_maintainer(basic_registry: InProcessRegistry) -> None:
    name = unique("team-b")
    with as_user(basic_registry, "carol") as carol:
        digest = push_image(carol, name, image(layers=1, layer_size=64), tag="v1")
    with as_user(basic_registry, "admin") as admin:
        r = admin.put(f"/v2/{unique('team-a')}/manifests/x", content=b"{}")
        assert r.status_code != 403  # admin may push anywhere (the body is just invalid)
    with as_user(basic_registry, "carol") as carol:
        assert carol.delete(f"/v2/{name}/manifests/{digest}").status_code == 202


def test_mount_without_pull_on_the_source_starts_a_normal_upload(
    basic_registry: InProcessRegistry,
) -> None:
    source, target = unique("team-a"), unique("team-b")
    with as_user(basic_registry, "alice") as alice:
        digest = push_blob(alice, source, uuid.uuid4().bytes * 4)
    with as_user(basic_registry, "carol") as carol:
        r = carol.post(f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": source})
        assert r.status_code == 202
        assert carol.head(f"/v2/{target}/blobs/{digest}").status_code == 404
        assert carol.delete(r.headers["location"]).status_code == 204


def test_catalog_is_filtered(basic_registry: InProcessRegistry, anonymous: httpx.Client) -> None:
    a, b, p = unique("team-a"), unique("team-b"), unique("public")
    with as_user(basic_registry, "admin") as admin:
        for name in (a, b, p):
            push_image(admin, name, image(layers=1, layer_size=32), tag="v1")
        assert {a, b, p} <= set(admin.get("/v2/_catalog").json()["repositories"])
    with as_user(basic_registry, "bob") as bob:
        listed = set(bob.get("/v2/_catalog").json()["repositories"])
    assert a in listed and p in listed and b not in listed
    listed = set(anonymous.get("/v2/_catalog").json()["repositories"])
    assert p in listed and a not in listed and b not in listed


def test_repeated_failures_are_rate_limited(basic_registry: InProcessRegistry) -> None:
    with as_user(basic_registry, "throttled", "guess") as c:
        for _ in range(3):
            assert c.get("/v2/").status_code == 401
    with as_user(basic_registry, "throttled") as c:
        r = c.get("/v2/")
        assert r.status_code == 429 and "retry-after" in r.headers
