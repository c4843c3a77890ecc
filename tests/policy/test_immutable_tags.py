"""Immutable tags through the API (in this process, over the memory driver): moves and
deletes refused with DENIED naming the rule, idempotent re-pushes accepted, cosign-style
signature tags replaced, retention leaving them, cache fills exempt, and two pushes
racing to create one tag."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from registry.config import Config
from registry.context import RequestContext, acting_as
from registry.errors import RegistryError
from registry.policy import install
from registry.store import Tag, open_store
from registry.store.changes import Collected
from storage_backends import Driver
from storage_backends.memory import MemoryDriver, MemoryStore
from tests.asgi_registry import InProcessRegistry
from tests.images import Image, image, push_image
from tests.policy.conftest import Factory, aged_registry, collect, policy_config, store_of

RULES = {
    "immutable_tags": [
        {
            "name": "releases",
            "repositories": ["prod/**", "team-*/app"],
            "tags": ["v*", "release-*"],
            "exceptions": ["*-rc*"],
        },
        {"name": "stable", "repositories": ["prod/**"], "tags": ["stable"]},
    ]
}


@pytest.fixture
def registry(make_registry: Factory) -> InProcessRegistry:
    return make_registry(policy_config(RULES))


def put_manifest(client: httpx.Client, name: str, img: Image, ref: str) -> httpx.Response:
    headers = {"Content-Type": img.media_type}
    return client.put(f"/v2/{name}/manifests/{ref}", content=img.manifest, headers=headers)


def refusal(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 403, response.text
    error: dict[str, Any] = response.json()["errors"][0]
    assert error["code"] == "DENIED"
    return error


def test_moving_an_immutable_tag_is_refused_naming_the_rule(registry: InProcessRegistry) -> None:
    client = registry.client()
    first, second = image(), image()
    push_image(client, "prod/app", first, "v1.2.3")
    push_image(client, "prod/app", second)  # by digest: its blobs and manifest are there
    error = refusal(put_manifest(client, "prod/app", second, "v1.2.3"))
    assert "rule 'releases'" in error["message"]
    assert "prod/app:v1.2.3" in error["message"]
    assert error["detail"] == {"repository": "prod/app", "tag": "v1.2.3", "rule": "releases"}
    got = client.get("/v2/prod/app/manifests/v1.2.3", headers={"Accept": first.media_type})
    assert got.headers["Docker-Content-Digest"] == first.digest


def test_pushing_the_same_digest_again_is_accepted(registry: InProcessRegistry) -> None:
    client = registry.client()
    img = image()
    push_image(client, "prod/app", img, "v1")
    for _ in range(2):  # a CI job retried
        assert put_manifest(client, "prod/app", img, "v1").status_code == 201
    # ... and with more tags at once, the immutable one unchanged.
    r = client.put(
        f"/v2/prod/app/manifests/{img.digest}",
        params=[("tag", "v1"), ("tag", "latest")],
        content=img.manifest,
        headers={"Content-Type": img.media_type},
    )
    assert r.status_code == 201, r.text


def test_a_push_naming_an_immutable_tag_among_others_changes_nothing(
    registry: InProcessRegistry,
) -> None:
    client = registry.client()
    first, second = image(), image()
    push_image(client, "prod/app", first, "v1")
    push_image(client, "prod/app", second)
    r = client.put(
        f"/v2/prod/app/manifests/{second.digest}",
        params=[("tag", "latest"), ("tag", "v1")],
        content=second.manifest,
        headers={"Content-Type": second.media_type},
    )
    refusal(r)
    assert client.get("/v2/prod/app/tags/list").json()["tags"] == ["v1"]


def test_deleting_an_immutable_tag_is_refused(registry: InProcessRegistry) -> None:
    client = registry.client()
    push_image(client, "prod/app", image(), "release-7")
    error = refusal(client.delete("/v2/prod/app/manifests/release-7"))
    assert "cannot delete" in error["message"] and "'releases'" in error["message"]
    assert client.get("/v2/prod/app/tags/list").json()["tags"] == ["release-7"]


def test_deleting_a_manifest_an_immutable_tag_names_is_refused(
    registry: InProcessRegistry,
) -> None:
    """Deleting by digest deletes the tags too: it would free the tag for another push."""
    client = registry.client()
    kept, free = image(), image()
    push_image(client, "prod/app", kept, "v2")
    push_image(client, "prod/app", free, "dev")
    error = refusal(client.delete(f"/v2/prod/app/manifests/{kept.digest}"))
    assert kept.digest in error["message"]
    assert client.delete(f"/v2/prod/app/manifests/{free.digest}").status_code == 202


def test_cosign_signature_tags_are_accepted_and_replaced(make_registry: Factory) -> None:
    """cosign stores signatures under sha256-<hex>.sig and appends one by replacing the
    manifest under that tag: a rule for every tag still lets it (Harbor does not)."""
    every_tag = {"immutable_tags": [{"repositories": ["prod/**"]}]}
    client = make_registry(policy_config(every_tag)).client()
    signed = image()
    push_image(client, "prod/app", signed, "v1")
    hex_ = signed.digest.split(":")[1]
    for suffix in (".sig", ".att", ".sbom", ""):
        tag = f"sha256-{hex_}{suffix}"
        first = image(layers=1, subject=signed, artifact_type="application/vnd.dev.cosign")
        second = image(layers=1, subject=signed, artifact_type="application/vnd.dev.cosign")
        push_image(client, "prod/app", first, tag)
        push_image(client, "prod/app", second, tag)  # re-signed: the tag moves
        got = client.head(f"/v2/prod/app/manifests/{tag}", headers={"Accept": second.media_type})
        assert got.headers["Docker-Content-Digest"] == second.digest
        assert client.delete(f"/v2/prod/app/manifests/{tag}").status_code == 202
    # Every other tag is immutable.
    other = image()
    push_image(client, "prod/app", other)
    refusal(put_manifest(client, "prod/app", other, "v1"))


def test_referrer_tags_are_immutable_when_the_rule_says_so(make_registry: Factory) -> None:
    policy = {"immutable_tags": [{"repositories": ["**"], "exempt_referrer_tags": False}]}
    client = make_registry(policy_config(policy)).client()
    signed = image()
    push_image(client, "lib/app", signed, "v1")
    tag = f"sha256-{signed.digest.split(':')[1]}.sig"
    push_image(client, "lib/app", image(layers=1, subject=signed), tag)
    other = image(layers=1, subject=signed)
    push_image(client, "lib/app", other)
    refusal(put_manifest(client, "lib/app", other, tag))


@pytest.mark.parametrize(
    ("repository", "tag", "immutable"),
    [
        ("prod/app", "v1", True),
        ("prod/team/deep/app", "release-2024", True),
        ("team-a/app", "v3", True),
        ("team-a/other", "v3", False),  # the repository pattern does not match
        ("prod/app", "latest", False),  # no tag pattern matches
        ("prod/app", "v2-rc1", False),  # an exception
        ("prod/app", "stable", True),  # the second rule
        ("dev/app", "v1", False),
    ],
)
def test_rules_by_pattern_with_exceptions(
    registry: InProcessRegistry, repository: str, tag: str, immutable: bool
) -> None:
    client = registry.client()
    first, second = image(), image()
    push_image(client, repository, first, tag)
    push_image(client, repository, second)
    moved = put_manifest(client, repository, second, tag)
    if immutable:
        refusal(moved)
        refusal(client.delete(f"/v2/{repository}/manifests/{tag}"))
    else:
        assert moved.status_code == 201, moved.text
        assert client.delete(f"/v2/{repository}/manifests/{tag}").status_code == 202


def test_retention_never_deletes_an_immutable_tag(make_registry: Factory) -> None:
    """keep_last 1 over v1, v2, dev-1, dev-2: the immutable v* stay and do not count
    towards keep_last (as protected tags); of the others only the newest stays."""
    registry, storage_time = aged_registry(make_registry, policy_config(RULES))
    client = registry.client()
    for tag in ("v1", "v2", "dev-1", "dev-2"):
        push_image(client, "prod/app", image(), tag)
        storage_time.age(10)  # pushed one after the other
    storage_time.age()
    collect(registry, retention=[{"repositories": ["prod/**"], "keep_last": 1}])
    assert client.get("/v2/prod/app/tags/list").json()["tags"] == ["dev-2", "v1", "v2"]


def test_the_collector_cannot_delete_an_immutable_tag(registry: InProcessRegistry) -> None:
    """Whatever selects it, a delete of an immutable tag by the collector is refused."""
    store = store_of(registry)
    with pytest.raises(RegistryError) as refused:
        registry.run(store.changes.before(Collected((Tag("prod/app", "v1"),))))
    assert refused.value.code.code == "DENIED"
    registry.run(store.changes.before(Collected((Tag("prod/app", "latest"),))))


def test_cache_fills_follow_the_upstream(registry: InProcessRegistry) -> None:
    """A pull-through cache mirrors its upstream's tags: fills (origin proxy) move them."""
    store = store_of(registry)
    client = registry.client()
    first, second = image(), image()
    push_image(client, "prod/cache", first, "v1")
    push_image(client, "prod/cache", second)

    async def fill() -> None:
        with acting_as(RequestContext(origin="proxy")):
            await store.manifests.put("prod/cache", "v1", second.manifest, second.media_type)

    registry.run(fill())
    got = client.head("/v2/prod/cache/manifests/v1", headers={"Accept": second.media_type})
    assert got.headers["Docker-Content-Digest"] == second.digest


# ---------------------------------------------------------------------------- the race


class IntentBarrier:
    """A driver that holds every listing of tag intents until ``parties`` intents have
    been written: both pushes write before either looks."""

    name = "barrier"

    def __init__(self, inner: Driver, written: asyncio.Event, count: list[int], parties: int):
        self.inner = inner
        self.written = written
        self.count = count
        self.parties = parties

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    async def put(self, path: str, data: bytes) -> None:
        await self.inner.put(path, data)
        if path.startswith("tag-intents/"):
            self.count[0] += 1
            if self.count[0] >= self.parties:
                self.written.set()

    async def list(self, prefix: str, **kwargs: Any) -> list[str]:
        if prefix.startswith("tag-intents/"):
            await asyncio.wait_for(self.written.wait(), 10)
        result: list[str] = await self.inner.list(prefix, **kwargs)
        return result


def _push_body(img: Image) -> tuple[bytes, str]:
    return img.manifest, img.media_type


def test_two_pushes_creating_one_immutable_tag_cannot_both_win(
    registry: InProcessRegistry,
) -> None:
    """Two processes push v1 with different digests at once, each writing its intent
    before either lists: neither may get a 201 that the other then overwrites."""
    client = registry.client()
    a, b = image(), image()
    for img in (a, b):
        push_image(client, "prod/app", img)  # by digest: blobs and manifests in place
    shared: MemoryStore = registry.driver.store  # type: ignore[attr-defined]
    config = Config.model_validate(policy_config(RULES))

    async def race() -> list[str | None]:
        written, count = asyncio.Event(), [0]

        async def push(img: Image) -> str | None:
            driver = IntentBarrier(MemoryDriver(shared), written, count, 2)
            store = open_store(config, driver=driver)  # type: ignore[arg-type]
            install(store, config.policy)
            try:
                await store.manifests.put("prod/app", "v1", *_push_body(img))
            except RegistryError as exc:
                assert exc.code.code == "DENIED"
                assert "at the same moment" in exc.message
                return None
            return img.digest

        return list(await asyncio.gather(push(a), push(b)))

    winners = [w for w in asyncio.run(race()) if w is not None]
    assert len(winners) <= 1
    tag = client.head("/v2/prod/app/manifests/v1", headers={"Accept": a.media_type})
    if winners:
        assert tag.headers["Docker-Content-Digest"] == winners[0]
    else:
        assert tag.status_code == 404
        # Retrying, one wins and the other is refused as a move.
        assert put_manifest(client, "prod/app", a, "v1").status_code == 201
        refusal(put_manifest(client, "prod/app", b, "v1"))
