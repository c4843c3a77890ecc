"""Recording through the app: a request that fails settles its records at once (no wait
for inflight_timeout), pulls are recorded only when asked for, and the configuration's
rules for endpoints."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from registry.config import Config, load_config
from registry.events.model import Event, Target
from registry.events.queue import DeadLetter
from registry.store import RegistryStore
from storage_backends.filesystem import FilesystemDriver
from tests.asgi_registry import InProcessRegistry
from tests.events.receiver import Receiver
from tests.events.test_delivery import Refuse
from tests.images import image, push_image

SECRET = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ="


def config(receiver: Receiver, **events: Any) -> dict[str, Any]:
    return {
        "notifications": {
            "poll_interval": 0.1,
            "inflight_timeout": "1h",
            "events": events,
            "endpoints": [{"name": "hook", "url": receiver.url}],
        }
    }


@pytest.fixture
def receiver() -> Any:
    r = Receiver()
    yield r
    r.close()


def tags_pushed(events: list[dict[str, Any]]) -> list[str]:
    return [e["target"]["tag"] for e in events if e["action"] == "push" and "tag" in e["target"]]


def test_a_failed_request_settles_its_records_at_once(
    receiver: Receiver, make_registry: Callable[..., InProcessRegistry]
) -> None:
    registry = make_registry(config(receiver))
    registry.app.state.store.changes.listen(Refuse("bad"))  # after the recorder
    img = image(layers=1)
    with registry.client() as c:
        push_image(c, "team/app", img)
        for tag in ("ok1", "bad", "ok2"):
            r = c.put(
                f"/v2/team/app/manifests/{tag}",
                content=img.manifest,
                headers={"Content-Type": img.media_type},
            )
            assert r.status_code == (403 if tag == "bad" else 201)
    events = receiver.wait_for(lambda got: "ok2" in tags_pushed(got), timeout=10)
    assert tags_pushed(events) == ["ok1", "ok2"]
    assert not [p for p in registry.stored_files() if p.startswith("events/pending/")]


def test_pulls_are_recorded_only_when_asked_for(
    receiver: Receiver, make_registry: Callable[..., InProcessRegistry]
) -> None:
    def pulls_of(**events: Any) -> list[tuple[str, str]]:
        registry = make_registry(config(receiver, **events))
        img = image(layers=1)
        blob = next(iter(img.blobs))
        with registry.client() as c:
            push_image(c, "team/app", img, tag="v1")
            c.head("/v2/team/app/manifests/v1")
            c.get("/v2/team/app/manifests/v1")
            c.get(f"/v2/team/app/blobs/{blob}")
            c.head(f"/v2/team/app/blobs/{blob}")
            push_image(c, "team/end", image(layers=1), tag="end")
        got = receiver.wait_for(lambda got: "end" in tags_pushed(got), timeout=10)
        receiver.deliveries.clear()
        return [
            (e["request"]["method"], e["target"]["mediaType"]) for e in got if e["action"] == "pull"
        ]

    assert pulls_of() == []
    manifest, blob = "application/vnd.oci.image.manifest.v1+json", "application/octet-stream"
    assert pulls_of(pulls=True) == [
        ("HEAD", manifest),
        ("GET", manifest),
        ("GET", blob),
        ("HEAD", blob),
    ]
    assert pulls_of(pulls=True, headpulls=False) == [("GET", manifest), ("GET", blob)]


def endpoint(**fields: Any) -> dict[str, Any]:
    return {"notifications": {"endpoints": [{"name": "hook", "url": "http://h/x", **fields}]}}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"secrets": ["plain"]}, "whsec_"),
        ({"secrets": ["whsec_%%%"]}, "base64"),
        ({"secrets": ["whsec_c2hvcnQ="]}, "24 to 64 bytes"),
        ({"secrets": [SECRET, SECRET, SECRET]}, "at most 2"),
        ({"name": "no/slash"}, "pattern"),
        ({"url": "ftp://h/x"}, "pattern"),
        ({"backoff": "10s", "maxbackoff": "1s"}, "shorter than backoff"),
        ({"ignore": {"actions": ["poke"]}}, "push"),
        ({"repositories": ["team//x"]}, "empty segments"),
    ],
)
def test_endpoint_settings_are_checked(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Config.model_validate(endpoint(**fields))
    # What `registry check-config` and `serve` print: never the value (it may be a secret).
    said = " ".join(str(e) for e in refused.value.errors(include_input=False, include_url=False))
    assert message in said
    assert "c2VjcmV0" not in said


def test_two_endpoints_of_one_name_are_refused() -> None:
    doc = endpoint()
    doc["notifications"]["endpoints"] *= 2
    with pytest.raises(ValidationError, match="two endpoints are named 'hook'"):
        Config.model_validate(doc)


def test_endpoints_from_the_environment_and_secrets_kept_out_of_reprs() -> None:
    environ = {
        "REGISTRY_NOTIFICATIONS_ENDPOINTS": (
            f"[{{name: ci, url: 'https://ci.example/hook', secrets: ['{SECRET}'],"
            " headers: {Authorization: 'Bearer t0ken'}}]"
        )
    }
    loaded = load_config(None, environ=environ)
    [hook] = loaded.notifications.endpoints
    assert hook.headers == {"Authorization": ["Bearer t0ken"]}
    assert hook.secrets[0].get_secret_value() == SECRET
    assert SECRET not in repr(loaded) and "t0ken" not in repr(loaded)


def test_the_events_command_lists_replays_and_purges_dead_letters(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    store = RegistryStore(FilesystemDriver(data))
    events = [
        Event(
            f"id-{n}", "2024-01-01T00:00:00Z", "push", "manifest", Target("team/app", tag=f"v{n}")
        )
        for n in range(3)
    ]
    letters = [
        DeadLetter(0, tuple(events[:2]), 21, "HTTP 503", 0.0),
        DeadLetter(2, (events[2],), 21, "HTTP 500", 0.0),
    ]
    for letter in letters:
        asyncio.run(store.outbox.write_dead_letter("endpoint/hook", letter.seq, letter.dump()))
    config = tmp_path / "registry.yml"
    config.write_text(
        "notifications:\n  endpoints:\n    - name: hook\n      url: http://127.0.0.1:9/\n"
    )

    def run(*args: str) -> str:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "registry",
                "events",
                *args,
                "--config",
                str(config),
                "--data-dir",
                str(data),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run("list") == "endpoint/hook: 0 queued, 3 dead\n"
    listed = run("list", "--endpoint", "hook", "--dead")
    assert "id-0 2024-01-01T00:00:00Z push team/app v0 (21 attempts: HTTP 503)" in listed
    assert (
        run("replay", "--endpoint", "hook", "--id", "id-2")
        == "endpoint/hook: 1 dead events queued again\n"
    )
    [pending] = asyncio.run(store.outbox.pending())
    raw = asyncio.run(store.outbox.read_many([pending]))[pending]
    assert b'"to":"endpoint/hook"' in raw and b"id-2" in raw
    assert run("purge", "--endpoint", "hook") == "endpoint/hook: 2 dead events deleted\n"
    assert run("list") == "endpoint/hook: 0 queued, 0 dead\n"
