"""Events from real ``registry serve`` processes to a real receiver: a scripted session
arrives as documented, signed, and de-duplication by id yields each event once; kill -9
between acknowledged pushes and their delivery loses none; two processes on one S3
bucket (Ceph RGW) deliver each event once, and none is lost when one of them dies."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from registry.events import signing
from tests.conftest import start_server, storage_config
from tests.events.receiver import Delivery, Receiver
from tests.images import image, push_image
from tests.server import RegistryServer

OLD_SECRET = "whsec_" + "b2xkLXNlY3JldC1vbGQtc2VjcmV0LW9sZC1zZWNyZXQ="
NEW_SECRET = "whsec_" + "bmV3LXNlY3JldC1uZXctc2VjcmV0LW5ldy1zZWNyZXQ="


def endpoint(receiver: Receiver, **extra: Any) -> dict[str, Any]:
    return {
        "name": "hook",
        "url": receiver.url,
        "timeout": "2s",
        "threshold": 1,
        "backoff": "200ms",
        "maxbackoff": "1s",
        "maxretries": 1000,
        **extra,
    }


def notifications(receiver: Receiver, **extra: Any) -> dict[str, Any]:
    return {
        "notifications": {
            "lease_ttl": "3s",
            "poll_interval": "200ms",
            "endpoints": [endpoint(receiver)],
            **extra,
        }
    }


def unique(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """De-duplication by id, as a receiver does it: the first copy of each event."""
    seen: set[str] = set()
    out = []
    for e in events:
        if e["id"] not in seen:
            seen.add(e["id"])
            out.append(e)
    return out


def summary(e: dict[str, Any]) -> tuple[str, str, str]:
    t = e["target"]
    return (e["action"], t["repository"], t.get("tag") or t.get("digest", ""))


class FlakyReceiver(Receiver):
    """Keeps every request but answers 500 to every third, as a receiver that processed
    an event and then failed to say so: the registry sends it again, with the same id."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        original = self._server.RequestHandlerClass.do_POST  # type: ignore[attr-defined]
        receiver = self

        def do_post(handler: Any) -> None:
            receiver.count += 1
            receiver.status = 500 if receiver.count % 3 == 0 else 200
            length = int(handler.headers.get("content-length", "0"))
            body = handler.rfile.read(length)
            headers = {k.lower(): v for k, v in handler.headers.items()}
            with receiver._lock:
                receiver.deliveries.append(Delivery(handler.path, headers, body))
            handler.send_response(receiver.status)
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        del original
        self._server.RequestHandlerClass.do_POST = do_post  # type: ignore[attr-defined]


def test_a_scripted_session_arrives_signed_as_documented(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    receiver = FlakyReceiver()
    request.addfinalizer(receiver.close)
    config = notifications(receiver, events={"pulls": True, "headpulls": False})
    # One event per request, as distribution sends them; signed with two secrets.
    config["notifications"]["endpoints"][0].update(batch=1, secrets=[OLD_SECRET, NEW_SECRET])
    server = start_server(request, tmp_path / "registry", config=config)
    img = image(layers=1)
    with server.client() as c:
        digest = push_image(c, "team/app", img, tag="v1")
        assert c.head("/v2/team/app/manifests/v1").status_code == 200  # not a pull here
        assert c.get("/v2/team/app/manifests/v1").status_code == 200
        blob = next(iter(img.blobs))
        r = c.post(f"/v2/team/copy/blobs/uploads/?mount={blob}&from=team/app")
        assert r.status_code == 201
        assert c.delete("/v2/team/app/manifests/v1").status_code == 202
        assert c.delete(f"/v2/team/app/manifests/{digest}").status_code == 202
        assert c.delete(f"/v2/team/copy/blobs/{blob}").status_code == 202
    expected = [("push", "team/app", b) for b in img.blobs]
    expected[1:1] = [("create", "team/app", "")]
    expected += [
        ("push", "team/app", "v1"),
        ("pull", "team/app", "v1"),
        ("mount", "team/copy", blob),
        ("create", "team/copy", ""),
        ("delete", "team/app", "v1"),
        ("delete", "team/app", digest),
        ("delete", "team/copy", blob),
    ]
    receiver.wait_for(lambda got: len(unique(got)) >= len(expected), timeout=30)
    time.sleep(1)  # anything more would show up now
    events = unique(receiver.events())
    assert [summary(e) for e in events] == expected
    assert len(receiver.events()) > len(events)  # the 500s made the registry send again
    keys = {name: [signing.secret_key(name)] for name in (OLD_SECRET, NEW_SECRET)}
    for delivery in receiver.deliveries:
        [event] = delivery.events
        assert delivery.headers["webhook-id"] == event["id"]
        assert delivery.headers["content-type"] == (
            "application/vnd.docker.distribution.events.v2+json"
        )
        # Signed with both secrets: a receiver that knows either one accepts it.
        for key in keys.values():
            assert signing.verify(key, delivery.headers, delivery.body, time.time())
        tampered = delivery.body.replace(b"team", b"meat")
        assert not signing.verify(keys[NEW_SECRET], delivery.headers, tampered, time.time())
    push = next(e for e in events if summary(e) == ("push", "team/app", "v1"))
    assert push["target"]["url"] == f"{server.url}/v2/team/app/manifests/{digest}"
    assert push["request"]["method"] == "PUT"
    assert push["source"]["addr"].endswith(f":{server.port}")
    assert OLD_SECRET not in server.log() and NEW_SECRET not in server.log()


def test_kill_9_between_acknowledged_pushes_and_delivery_loses_none(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    receiver = Receiver(status=503)  # down: nothing is delivered before the kill
    request.addfinalizer(receiver.close)
    server = start_server(request, tmp_path / "registry", config=notifications(receiver))
    acknowledged = []
    with server.client() as c:
        for i in range(10):
            push_image(c, f"team/r{i % 3}", image(layers=1, layer_size=64), tag=f"v{i}")
            acknowledged.append((f"team/r{i % 3}", f"v{i}"))
    deadline = time.monotonic() + 10
    while receiver.refused == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert receiver.refused > 0 and receiver.events() == []
    server.stop(signal.SIGKILL)
    receiver.status = 200
    server.start()
    got = receiver.wait_for(lambda events: set(acknowledged) <= pushed_tags(events), timeout=60)
    for repo in ("team/r0", "team/r1", "team/r2"):
        tags = [t for r, t in ordered_pushes(got) if r == repo]
        assert tags == [t for r, t in acknowledged if r == repo]


def pushed_tags(events: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return set(ordered_pushes(events))


def ordered_pushes(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (e["target"]["repository"], e["target"]["tag"])
        for e in unique(events)
        if e["action"] == "push" and e["target"].get("tag")
    ]


@pytest.mark.s3
def test_two_processes_on_one_bucket_deliver_once_and_lose_none_when_one_dies(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    receiver = Receiver()
    request.addfinalizer(receiver.close)
    config = {**storage_config(request, "s3"), **notifications(receiver)}
    servers = [start_server(request, tmp_path / f"registry-{i}", config=config) for i in range(2)]
    pushed: list[tuple[str, str]] = []

    def push_round(targets: list[RegistryServer], count: int) -> None:
        for i in range(count):
            server = targets[i % len(targets)]
            with server.client() as c:
                n = len(pushed)
                push_image(c, f"team/r{n % 2}", image(layers=1, layer_size=64), tag=f"v{n}")
                pushed.append((f"team/r{n % 2}", f"v{n}"))

    push_round(servers, 6)
    events = receiver.wait_for(lambda got: set(pushed) <= pushed_tags(got), timeout=60)
    time.sleep(1)
    ids = [e["id"] for e in receiver.events()]
    assert len(ids) == len(set(ids))  # the normal case: each event once
    assert len(events) >= len(pushed)

    holder = next(s for s in servers if "this process delivers now" in s.log())
    survivor = next(s for s in servers if s is not holder)
    # Between the pushes and their delivery, as far as the dying process can tell.
    receiver.status = 503
    push_round([holder, survivor], 4)
    holder.stop(signal.SIGKILL)
    receiver.status = 200
    push_round([survivor], 2)
    receiver.wait_for(lambda got: set(pushed) <= pushed_tags(got), timeout=90)
    for repo in ("team/r0", "team/r1"):
        tags = [t for r, t in ordered_pushes(receiver.events()) if r == repo]
        assert tags == [t for r, t in pushed if r == repo]
