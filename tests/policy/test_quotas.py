"""Quotas through the API (in this process, over the memory driver, which lets a test see
every byte the server took from a request body and every byte it stored): refused as
early as the protocol allows, shared layers counted once, usage right after a delete,
what a collection frees reported apart, mounts and manifests checked too."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from registry.context import RequestContext, acting_as
from registry.errors import RegistryError
from tests.images import Image, image, push_blob, push_image
from tests.policy.conftest import (
    CountingBody,
    Factory,
    Stores,
    aged_registry,
    collect,
    digest_of,
    namespace,
    policy_config,
    random_blob,
    stored_upload_bytes,
    upload,
    upload_session,
)

KIB, MIB = 1024, 1024 * 1024


def quota(limit: int, **extra: Any) -> dict[str, Any]:
    return {
        "quotas": [{"name": "team", "repositories": ["team/**"], "limit": limit, **extra}],
        "quota": {"upload_grant": MIB},
    }


def denied(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 403, response.text
    error: dict[str, Any] = response.json()["errors"][0]
    assert error["code"] == "DENIED"
    return error


def image_bytes(img: Image) -> int:
    return len(img.manifest) + sum(len(b) for b in img.blobs.values())


def test_a_push_under_the_limit_passes_and_is_counted(make_registry: Factory) -> None:
    client = make_registry(policy_config(quota(MIB))).client()
    img = image(layers=3, layer_size=10 * KIB)
    push_image(client, "team/app", img, "v1")
    row = namespace(client, "team")
    assert row["used_bytes"] == image_bytes(img)
    assert row["limit"] == MIB and row["pending_bytes"] == 0 and row["in_flight_bytes"] == 0
    assert row["percent"] == round(100 * image_bytes(img) / MIB, 1)


def test_a_monolithic_push_over_the_limit_is_refused_before_its_bytes_are_read(
    make_registry: Factory,
) -> None:
    registry = make_registry(policy_config(quota(2 * MIB)))
    client = registry.client()
    data = random_blob(3 * MIB)
    body = CountingBody(data)
    r = client.post(
        "/v2/team/app/blobs/uploads/",
        params={"digest": digest_of(data)},
        content=iter(body),
        headers={"Content-Length": str(len(data))},
    )
    error = denied(r)
    assert "quota 'team'" in error["message"] and "2.0 MiB" in error["message"]
    assert error["detail"]["limit"] == 2 * MIB and error["detail"]["requested"] == len(data)
    assert body.taken == 0  # refused on its Content-Length
    assert stored_upload_bytes(registry) == 0
    assert namespace(client, "team")["in_flight_bytes"] == 0


def test_a_chunk_of_unknown_length_is_refused_before_the_crossing_bytes_are_stored(
    make_registry: Factory,
) -> None:
    registry = make_registry(policy_config(quota(2 * MIB)))
    client = registry.client()
    first = image(layers=1, layer_size=300 * KIB)
    push_image(client, "team/app", first, "v1")
    used = namespace(client, "team")["used_bytes"]
    location = upload_session(client, "team/app")
    body = CountingBody(random_blob(4 * MIB), piece=64 * KIB)
    r = client.patch(location, content=iter(body))  # no Content-Length: chunked
    error = denied(r)
    assert error["detail"]["stage"] in ("upload", "chunk")
    stored = stored_upload_bytes(registry)
    assert stored <= 2 * MIB - used  # never past the limit
    assert body.taken <= stored + 64 * KIB  # and at most one piece read beyond
    assert body.taken < len(body.data)
    # The session keeps what it stored (a client may cancel it); it counts in flight.
    row = namespace(client, "team")
    assert row["in_flight_bytes"] == stored and row["used_bytes"] == used
    assert client.delete(location).status_code == 204
    assert namespace(client, "team")["in_flight_bytes"] == 0


def test_a_chunk_of_known_length_over_the_limit_is_refused_unread(
    make_registry: Factory,
) -> None:
    registry = make_registry(policy_config(quota(2 * MIB)))
    client = registry.client()
    location = upload_session(client, "team/app")
    small = random_blob(MIB)
    r = client.patch(location, content=small, headers={"Content-Range": f"0-{MIB - 1}"})
    assert r.status_code == 202, r.text
    body = CountingBody(random_blob(2 * MIB))
    r = client.patch(location, content=iter(body), headers={"Content-Length": str(2 * MIB)})
    denied(r)
    assert body.taken == 0
    assert stored_upload_bytes(registry) == MIB


def test_a_new_session_is_refused_when_the_quota_is_full(make_registry: Factory) -> None:
    client = make_registry(policy_config(quota(64 * KIB))).client()
    push_blob(client, "team/app", random_blob(64 * KIB))  # exactly the limit
    assert denied(client.post("/v2/team/app/blobs/uploads/"))["detail"]["stage"] == "upload"


def test_shared_layers_are_counted_once(make_registry: Factory) -> None:
    client = make_registry(policy_config(quota(10 * MIB))).client()
    base = image(layers=2, layer_size=50 * KIB)
    layers = {d: b for d, b in base.blobs.items() if len(b) > 1000}
    push_image(client, "team/a", base, "v1")
    push_image(client, "team/b", base, "v1")  # the same image in another repository
    push_image(client, "team/c/deep", base, "v1")
    assert namespace(client, "team")["used_bytes"] == image_bytes(base)
    # An image built on the same layers adds its own config and manifest only.
    other = image(layers=1, layer_size=10 * KIB)
    other_doc = other.manifest.replace(b'"layers": [', b'"layers": [' + _layer_refs(layers))
    derived = Image(other_doc, other.media_type, {**other.blobs, **layers})
    push_image(client, "team/b", derived, "v2")
    assert namespace(client, "team")["used_bytes"] == image_bytes(base) + image_bytes(
        derived
    ) - sum(len(b) for b in layers.values())
    usage = client.get("/api/usage").json()["repositories"]
    held = {r["name"]: r["held_bytes"] for r in usage}
    assert held["team/a"] == image_bytes(base)
    assert held["team/b"] == image_bytes(base) + image_bytes(derived) - sum(
        len(b) for b in layers.values()
    )


def _layer_refs(layers: dict[str, bytes]) -> bytes:
    refs = [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": len(b)}
        for d, b in layers.items()
    ]
    return b"".join(json.dumps(r).encode() + b", " for r in refs)


def test_usage_is_right_after_a_delete_and_what_gc_frees_is_reported_apart(
    make_registry: Factory,
) -> None:
    registry, storage_time = aged_registry(make_registry, policy_config(quota(10 * MIB)))
    client = registry.client()
    kept, dropped = image(layers=1, layer_size=40 * KIB), image(layers=2, layer_size=60 * KIB)
    push_image(client, "team/app", kept, "v1")
    push_image(client, "team/app", dropped, "v2")
    assert client.delete(f"/v2/team/app/manifests/{dropped.digest}").status_code == 202
    row = namespace(client, "team")
    assert row["used_bytes"] == image_bytes(kept)  # at once, no collection needed
    # Its config and layers are still linked (and stored) until a collection: released
    # from the quota at once (the room is back), freed by the collection.
    linked = sum(len(b) for b in dropped.blobs.values())
    assert (row["pending_bytes"], row["releasable_bytes"]) == (0, linked)
    again = next(iter(dropped.blobs.values()))
    push_blob(client, "team/app", again)  # pushed again: pending again
    assert namespace(client, "team")["pending_bytes"] == len(again)
    storage_time.age()  # everything is older than the grace period
    collect(registry, untagged={"policy": "delete"})
    after = namespace(client, "team")
    assert after["used_bytes"] == image_bytes(kept)
    assert after["releasable_bytes"] == 0


def test_a_tag_delete_leaves_the_manifest_counted_until_it_is_collected(
    make_registry: Factory,
) -> None:
    """The manifest stays pullable by digest after its tag goes: it is still held."""
    registry, storage_time = aged_registry(make_registry, policy_config(quota(10 * MIB)))
    client = registry.client()
    img = image(layers=1, layer_size=10 * KIB)
    push_image(client, "team/app", img, "v1")
    assert client.delete("/v2/team/app/manifests/v1").status_code == 202
    assert namespace(client, "team")["used_bytes"] == image_bytes(img)
    storage_time.age()
    collect(registry, untagged={"policy": "delete"})
    assert namespace(client, "team")["used_bytes"] == 0


def test_a_mount_over_the_limit_is_refused(make_registry: Factory) -> None:
    client = make_registry(policy_config(quota(100 * KIB))).client()
    data = random_blob(150 * KIB)
    push_blob(client, "other/app", data)
    r = client.post(
        "/v2/team/app/blobs/uploads/", params={"mount": digest_of(data), "from": "other/app"}
    )
    assert denied(r)["detail"]["stage"] == "mount"
    # A blob the namespace already holds mounts whatever its size.
    small = random_blob(10 * KIB)
    push_blob(client, "team/a", small)
    r = client.post(
        "/v2/team/b/blobs/uploads/", params={"mount": digest_of(small), "from": "team/a"}
    )
    assert r.status_code == 201


def test_the_manifest_put_is_refused_when_its_released_blobs_do_not_fit() -> None:
    """A deleted manifest's layers stay linked; once they no longer count, pushing the
    manifest again makes them count again, and is refused when they do not fit."""
    stores = Stores(policy_config(quota(300 * KIB) | {"quota": {"pending_window": 10}}))
    store, _ = stores.open()
    img = image(layers=1, layer_size=150 * KIB)

    async def scenario() -> None:
        for data in img.blobs.values():
            await upload(store, "team/app", data)
        await store.manifests.put("team/app", "v1", img.manifest, img.media_type)
        await store.manifests.delete("team/app", img.digest)
        stores.clock.now += 60  # the window is over: img's blobs no longer count
        filler = random_blob(200 * KIB)
        await upload(store, "team/other", filler)
        with pytest.raises(RegistryError) as refused:
            await store.manifests.put("team/app", "v1", img.manifest, img.media_type)
        assert refused.value.code.code == "DENIED"
        assert refused.value.detail["stage"] == "manifest"

    asyncio.run(scenario())


def test_a_failed_push_counts_while_it_may_finish_then_never() -> None:
    """Blobs pushed without their manifest count against the quota for the pending
    window (a push in progress), never as usage, and not after it (the push failed)."""
    stores = Stores(policy_config(quota(MIB) | {"quota": {"pending_window": 600}}))
    store, governance = stores.open()
    assert governance.book is not None
    data = random_blob(100 * KIB)

    async def scenario() -> None:
        await upload(store, "team/app", data)
        view = await governance.book.view(governance.rules.quotas[0])  # type: ignore[union-attr]
        figures = view.figures()
        assert (figures.used, figures.pending, figures.releasable) == (0, len(data), 0)
        stores.clock.now += 601
        view = await governance.book.view(governance.rules.quotas[0])  # type: ignore[union-attr]
        figures = view.figures()
        assert (figures.used, figures.pending, figures.releasable) == (0, 0, len(data))

    asyncio.run(scenario())


def test_an_abandoned_upload_session_counts_in_flight_until_it_is_idle() -> None:
    stores = Stores(policy_config(quota(MIB) | {"quota": {"session_idle": 300}}))
    store, governance = stores.open()
    guard, book = governance.quotas, governance.book
    assert guard is not None and book is not None

    async def scenario() -> None:
        state = await store.uploads.create("team/app")
        data = random_blob(200 * KIB)

        async def body() -> Any:
            yield data

        stream = guard.limit("team/app", state.upload_id, body(), 0, len(data))
        await store.uploads.append("team/app", state, stream)
        await guard.settle_session("team/app", state.upload_id, state.offset)
        view = await book.view(governance.rules.quotas[0])
        assert view.in_flight() == len(data) and view.figures().used == 0
        stores.clock.now += 301  # the client went away
        view = await book.view(governance.rules.quotas[0])
        assert view.in_flight() == 0 and view.figures().used == 0

    asyncio.run(scenario())


def test_a_per_repository_quota_limits_each_repository(make_registry: Factory) -> None:
    each = {"name": "ci", "repositories": ["ci/*"], "limit": 64 * KIB, "per_repository": True}
    config = policy_config({"quotas": [each]})
    client = make_registry(config).client()
    for repo in ("ci/one", "ci/two"):
        push_blob(client, repo, random_blob(40 * KIB))
    data = random_blob(40 * KIB)
    r = client.post(
        "/v2/ci/one/blobs/uploads/",
        params={"digest": digest_of(data)},
        content=data,
    )
    error = denied(r)
    assert "in ci/one" in error["message"] and "each" in error["message"]
    assert (
        client.post(
            "/v2/ci/three/blobs/uploads/", params={"digest": digest_of(data)}, content=data
        ).status_code
        == 201
    )


def test_every_quota_that_covers_a_repository_applies(make_registry: Factory) -> None:
    config = policy_config(
        {
            "quotas": [
                {"name": "team", "repositories": ["team/**"], "limit": 10 * MIB},
                {"name": "big", "repositories": ["team/big/**"], "limit": 100 * KIB},
            ]
        }
    )
    client = make_registry(config).client()
    data = random_blob(150 * KIB)
    params = {"digest": digest_of(data)}
    r = client.post("/v2/team/big/app/blobs/uploads/", params=params, content=data)
    assert denied(r)["detail"]["quota"] == "big"
    push_blob(client, "team/small", data)
    assert namespace(client, "team")["pending_bytes"] == len(data)
    assert namespace(client, "big")["pending_bytes"] == 0


def test_cache_fills_are_counted_but_never_refused() -> None:
    stores = Stores(policy_config(quota(64 * KIB)))
    store, governance = stores.open()
    data = random_blob(100 * KIB)

    async def scenario() -> None:
        with acting_as(RequestContext(origin="proxy")):
            await upload(store, "team/cache", data)
        with pytest.raises(RegistryError):
            await upload(store, "team/app", random_blob(10 * KIB))
        view = await governance.book.view(governance.rules.quotas[0])  # type: ignore[union-attr]
        assert view.figures().pending == len(data)

    asyncio.run(scenario())


def test_a_blob_committed_by_another_path_is_checked() -> None:
    """Replication commits through the store, not the upload routes: still checked."""
    stores = Stores(policy_config(quota(100 * KIB)))
    store, _ = stores.open()

    async def scenario() -> None:
        with acting_as(RequestContext(origin="replication")):
            await upload(store, "team/app", random_blob(60 * KIB))
            with pytest.raises(RegistryError) as refused:
                await upload(store, "team/app", random_blob(60 * KIB))
        assert refused.value.detail["stage"] == "blob"

    asyncio.run(scenario())
