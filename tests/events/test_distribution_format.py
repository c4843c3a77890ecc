"""The events of one scripted session, from CNCF distribution 2.8.2 (Debian's
docker-registry, notifications sent to a receiver in this test) and from this registry:
the same events in the same order, with the same fields, the same targets (media types,
sizes, digests, tags, references, fromRepository) and URLs of the same form.

What differs by design: this registry also sends ``create`` for a new repository
(left out below), calls the body ``...events.v2+json`` (distribution 3's name; 2.8
wrote v1), and writes microseconds where Go writes nanoseconds."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.asgi_registry import InProcessRegistry
from tests.distribution import start_distribution
from tests.events.receiver import Receiver
from tests.images import Image, image

SECRET = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ="


def push_blob_in_two_steps(client: httpx.Client, name: str, digest: str, data: bytes) -> None:
    """POST then PUT, as distribution 2.8 needs it (so both record a PUT)."""
    r = client.post(f"/v2/{name}/blobs/uploads/")
    assert r.status_code == 202, r.text
    url = httpx.URL(r.headers["Location"]).copy_merge_params({"digest": digest})
    r = client.put(url, content=data, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text


def session(client: httpx.Client, img: Image) -> None:
    for digest, data in img.blobs.items():
        push_blob_in_two_steps(client, "team/app", digest, data)
    for ref in ("v1", img.digest):
        r = client.put(
            f"/v2/team/app/manifests/{ref}",
            content=img.manifest,
            headers={"Content-Type": img.media_type},
        )
        assert r.status_code == 201, r.text
    accept = {"Accept": img.media_type}
    assert client.get("/v2/team/app/manifests/v1", headers=accept).status_code == 200
    assert client.head("/v2/team/app/manifests/v1", headers=accept).status_code == 200
    blob = next(iter(img.blobs))
    assert client.get(f"/v2/team/app/blobs/{blob}").status_code == 200
    assert client.head(f"/v2/team/app/blobs/{blob}").status_code == 200
    r = client.post(f"/v2/team/other/blobs/uploads/?mount={blob}&from=team/app")
    assert r.status_code == 201, r.text
    assert client.delete(f"/v2/team/app/manifests/{img.digest}").status_code == 202
    assert client.delete(f"/v2/team/other/blobs/{blob}").status_code == 202


EXPECTED_EVENTS = 13  # 3 blob pushes, 2 manifest pushes, 4 pulls, a mount, 3 deletes


def shape(event: dict[str, Any], base: str) -> dict[str, Any]:
    """What must agree between the two registries."""
    target = dict(event["target"])
    if "url" in target:
        assert target["url"].startswith(base + "/v2/"), target["url"]
        target["url"] = target["url"][len(base) :]
    return {
        "keys": list(event),
        "action": event["action"],
        "target": target,
        "request": sorted(event["request"]),
        "method": event["request"]["method"],
        "actor": event["actor"],
        "source": sorted(event["source"]),
        "timestamp": bool(
            re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", event["timestamp"])
        ),
    }


def collect(receiver: Receiver, wanted: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    events = receiver.wait_for(
        lambda got: len([e for e in got if wanted(e)]) >= EXPECTED_EVENTS, timeout=30
    )
    return [e for e in events if wanted(e)]


def test_the_same_events_as_distribution(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    img = image()
    theirs_receiver, ours_receiver = Receiver(), Receiver()
    try:
        distribution = start_distribution(
            request,
            tmp_path / "distribution",
            config={
                "notifications": {
                    "events": {"includereferences": True},
                    "endpoints": [
                        {
                            "name": "test",
                            "url": theirs_receiver.url,
                            "timeout": "2s",
                            "threshold": 3,
                            "backoff": "1s",
                        }
                    ],
                }
            },
        )
        with distribution.client() as client:
            session(client, img)
        theirs = collect(theirs_receiver, lambda e: True)
        assert theirs_receiver.deliveries[0].headers["content-type"] == (
            "application/vnd.docker.distribution.events.v1+json"
        )

        config = {
            "notifications": {
                "poll_interval": 0.1,
                "events": {"includereferences": True, "pulls": True},
                "endpoints": [{"name": "test", "url": ours_receiver.url, "secrets": [SECRET]}],
            }
        }
        with InProcessRegistry(config) as registry, registry.client() as client:
            session(client, img)
            ours = collect(ours_receiver, lambda e: e["action"] != "create")
        assert ours_receiver.deliveries[0].headers["content-type"] == (
            "application/vnd.docker.distribution.events.v2+json"
        )
    finally:
        theirs_receiver.close()
        ours_receiver.close()

    assert len(theirs) == len(ours) == EXPECTED_EVENTS
    for mine, reference in zip(ours, theirs, strict=True):
        assert shape(mine, "http://registry.test") == shape(reference, distribution.url)
