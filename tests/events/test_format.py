"""Golden tests: the exact JSON of every action, as distribution's notifications/event.go
marshals it (fields, which of them appear, the digest URL, the tag), and its CloudEvents
form. tests/events/test_distribution_format.py holds the same shapes against a running
distribution 2.8.2."""

from __future__ import annotations

import itertools
import json
from typing import Any

from registry.context import RequestContext
from registry.events import formats
from registry.events.bridge import Origin, blob_pulled, manifest_pulled, record_for, rfc3339
from registry.events.model import Event, Source
from registry.manifest import parse_manifest
from registry.reference import parse_digest
from registry.store.changes import (
    BlobMounted,
    BlobPushed,
    BlobUnlinked,
    Change,
    Collected,
    ManifestDeleted,
    ManifestPushed,
    RepositoryCreated,
    TagDeleted,
)
from registry.store.objects import Link, Revision, Tag

D1 = parse_digest("sha256:" + "a" * 64)
D2 = parse_digest("sha256:" + "b" * 64)
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": str(D2),
            "size": 2,
        },
        "layers": [],
    }
).encode()
OCI = "application/vnd.oci.image.manifest.v1+json"
NOW = 1700000000.25
CLIENT = RequestContext(
    origin="client",
    request_id="req-1",
    addr="10.0.0.7:40000",
    host="registry.example:5000",
    method="PUT",
    user_agent="docker/24.0",
    actor="alice",
)
REQUEST = {
    "id": "req-1",
    "addr": "10.0.0.7:40000",
    "host": "registry.example:5000",
    "method": "PUT",
    "useragent": "docker/24.0",
}
SOURCE = {"addr": "node-1:5000", "instanceID": "instance-1"}
BASE = "https://registry.example:5000"


def origin(context: RequestContext = CLIENT) -> Origin:
    ids = (f"event-{n}" for n in itertools.count(1))
    return Origin(context, BASE, Source("node-1:5000", "instance-1"), NOW, lambda: next(ids))


def envelope(change: Change, context: RequestContext = CLIENT) -> list[dict[str, Any]]:
    record = record_for(change, origin(context))
    assert record is not None
    content_type, body = formats.render("distribution", record.events)
    assert content_type == "application/vnd.docker.distribution.events.v2+json"
    events: list[dict[str, Any]] = json.loads(body)["events"]
    return events


def event(n: int, action: str, target: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": f"event-{n}",
        "timestamp": "2023-11-14T22:13:20.25Z",
        "action": action,
        "target": target,
        "request": extra.get("request", REQUEST),
        "actor": extra.get("actor", {"name": "alice"}),
        "source": SOURCE,
    }


def manifest_target(**extra: Any) -> dict[str, Any]:
    return {
        "mediaType": OCI,
        "size": len(MANIFEST),
        "digest": str(D1),
        "length": len(MANIFEST),
        "repository": "team/app",
        "url": f"{BASE}/v2/team/app/manifests/{D1}",
        **extra,
    }


def blob_target(**extra: Any) -> dict[str, Any]:
    return {
        "mediaType": "application/octet-stream",
        "size": 42,
        "digest": str(D2),
        "length": 42,
        "repository": "team/app",
        **extra,
        "url": f"{BASE}/v2/team/app/blobs/{D2}",
    }


def pushed(tags: tuple[str, ...]) -> ManifestPushed:
    return ManifestPushed(
        "team/app", D1, len(MANIFEST), parse_manifest(MANIFEST, OCI), tags, {t: None for t in tags}
    )


def test_manifest_push_by_tag_carries_the_tag_and_the_url_by_digest() -> None:
    assert envelope(pushed(("v1",))) == [event(1, "push", manifest_target(tag="v1"))]


def test_manifest_push_by_digest_has_no_tag() -> None:
    assert envelope(pushed(())) == [event(1, "push", manifest_target())]


def test_a_push_under_several_tags_is_one_event_per_tag() -> None:
    assert envelope(pushed(("v1", "latest"))) == [
        event(1, "push", manifest_target(tag="v1")),
        event(2, "push", manifest_target(tag="latest")),
    ]


def test_tag_delete_carries_only_repository_and_tag() -> None:
    assert envelope(TagDeleted("team/app", "v1", D1)) == [
        event(1, "delete", {"repository": "team/app", "tag": "v1"})
    ]


def test_manifest_delete_carries_digest_and_repository_then_its_tags() -> None:
    change = ManifestDeleted("team/app", D1, OCI, 10, ("v1", "latest"))
    assert envelope(change) == [
        event(1, "delete", {"digest": str(D1), "repository": "team/app"}),
        event(2, "delete", {"repository": "team/app", "tag": "v1"}),
        event(3, "delete", {"repository": "team/app", "tag": "latest"}),
    ]


def test_blob_push_mount_and_delete() -> None:
    assert envelope(BlobPushed("team/app", D2, 42)) == [event(1, "push", blob_target())]
    assert envelope(BlobMounted("team/app", D2, 42, "team/base")) == [
        event(1, "mount", blob_target(fromRepository="team/base"))
    ]
    assert envelope(BlobUnlinked("team/app", D2)) == [
        event(1, "delete", {"digest": str(D2), "repository": "team/app"})
    ]


def test_pulls_of_manifests_and_blobs() -> None:
    get = RequestContext(
        "client", "req-1", "10.0.0.7:40000", "registry.example:5000", "GET", "docker/24.0"
    )
    request = {**REQUEST, "method": "GET"}
    record = manifest_pulled(origin(get), "team/app", str(D1), OCI, len(MANIFEST), "v1")
    body = json.loads(formats.render("distribution", record.events)[1])
    assert body == {
        "events": [event(1, "pull", manifest_target(tag="v1"), request=request, actor={})]
    }
    record = blob_pulled(origin(get), "team/app", str(D2), 42)
    body = json.loads(formats.render("distribution", record.events)[1])
    assert body == {"events": [event(1, "pull", blob_target(), request=request, actor={})]}


def test_anonymous_and_background_changes_have_an_empty_actor() -> None:
    anonymous = RequestContext(
        "client", "req-1", "10.0.0.7:40000", "registry.example:5000", "PUT", "docker/24.0"
    )
    assert envelope(TagDeleted("team/app", "v1", D1), anonymous)[0]["actor"] == {}
    gc = RequestContext(origin="gc")
    collected = Collected(
        (Tag("team/app", "old"), Revision("team/app", D1), Link("team/app", D2)),
        {"team/app:old": D1},
    )
    assert envelope(collected, gc) == [
        event(
            1,
            "delete",
            {"repository": "team/app", "tag": "old"},
            request={"id": "", "method": "", "useragent": ""},
            actor={},
        ),
        event(
            2,
            "delete",
            {"digest": str(D1), "repository": "team/app"},
            request={"id": "", "method": "", "useragent": ""},
            actor={},
        ),
    ]


def test_repository_created_is_an_event_of_its_own() -> None:
    assert envelope(RepositoryCreated("team/app")) == [
        event(1, "create", {"repository": "team/app"})
    ]


def test_without_a_known_url_the_url_is_left_out() -> None:
    record = record_for(
        BlobPushed("team/app", D2, 42),
        Origin(CLIENT, "", Source(), NOW, lambda: "event-1"),
    )
    assert record is not None
    target = formats.distribution_event(record.events[0])["target"]
    assert "url" not in target
    assert formats.distribution_event(record.events[0])["source"] == {}


def test_references_are_distributions_descriptor_fields() -> None:
    record = record_for(pushed(("v1",)), origin())
    assert record is not None
    refs = ({"mediaType": "m", "size": 2, "digest": str(D2)},)
    with_refs: Event = record.events[0].with_references(refs)
    target = formats.distribution_event(with_refs)["target"]
    assert target["references"] == [{"mediaType": "m", "size": 2, "digest": str(D2)}]
    assert list(target) == [
        "mediaType",
        "size",
        "digest",
        "length",
        "repository",
        "url",
        "tag",
        "references",
    ]


def test_cloudevents_structured_and_batch() -> None:
    record = record_for(pushed(("v1", "latest")), origin())
    assert record is not None
    content_type, body = formats.render("cloudevents", record.events[:1])
    assert content_type == "application/cloudevents+json"
    assert json.loads(body) == {
        "specversion": "1.0",
        "id": "event-1",
        "type": "registry.event.push",
        "source": "/v2/team/app",
        "subject": "team/app:v1",
        "time": "2023-11-14T22:13:20.25Z",
        "datacontenttype": "application/json",
        "origin": "client",
        "data": event(1, "push", manifest_target(tag="v1")),
    }
    content_type, body = formats.render("cloudevents", record.events)
    assert content_type == "application/cloudevents-batch+json"
    assert [e["subject"] for e in json.loads(body)] == ["team/app:v1", "team/app:latest"]


def test_timestamps_are_rfc3339_in_utc_without_trailing_zeros() -> None:
    assert rfc3339(1700000000.0) == "2023-11-14T22:13:20Z"
    assert rfc3339(1700000000.123456) == "2023-11-14T22:13:20.123456Z"
    assert rfc3339(1700000000.5) == "2023-11-14T22:13:20.5Z"
