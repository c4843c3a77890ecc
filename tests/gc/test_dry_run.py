"""``registry gc --dry-run`` changes nothing and lists what a collection then deletes;
the command's exit status when another collection holds the lease."""

from __future__ import annotations

import json
import os
import time
import uuid

from registry.store import layout
from tests.gc.collection import (
    EXIT_BUSY,
    PAST_RESOLUTION,
    make_image,
    run_gc,
    run_gc_process,
)
from tests.gc.storage import snapshot, with_storage
from tests.images import push_blob, push_image
from tests.server import RegistryServer


def test_a_dry_run_changes_nothing_and_lists_what_a_collection_deletes(
    gc_server: RegistryServer,
) -> None:
    repo, retained = f"dry/{uuid.uuid4().hex[:8]}", f"dry/{uuid.uuid4().hex[:8]}/ret"
    dropped, kept = make_image([os.urandom(700)]), make_image([os.urandom(700)])
    old_tag, new_tag = make_image([os.urandom(300)]), make_image([os.urandom(300)])
    with gc_server.client() as client:
        push_image(client, repo, dropped, "drop")
        push_image(client, repo, kept, "keep")
        assert client.delete(f"/v2/{repo}/manifests/drop").status_code == 202
        loose = push_blob(client, repo, os.urandom(100))
        push_image(client, retained, old_tag, "a-old")
        push_image(client, retained, new_tag, "b-new")
        session = client.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
    settings = {
        "REGISTRY_GC_RETENTION": json.dumps([{"repositories": [retained], "keep_last": 1}]),
        "REGISTRY_UPLOADS_EXPIRY": "0s",
        "REGISTRY_GC_GRACE_PERIOD": "0s",
    }
    time.sleep(PAST_RESOLUTION)
    before = with_storage(gc_server, snapshot)

    dry = run_gc(gc_server, "--dry-run", wait=False, **settings)

    assert with_storage(gc_server, snapshot) == before
    assert dry["dry_run"] is True
    assert dry["tags_deleted"] == [f"{retained}:a-old"]
    assert set(dry["manifests_deleted"]) == {
        f"{repo}@{dropped.digest}",
        f"{retained}@{old_tag.digest}",
    }
    expected_blobs = {dropped.digest, *dropped.blobs, old_tag.digest, *old_tag.blobs, loose}
    assert set(dry["blobs_deleted"]) == expected_blobs
    assert dry["uploads_purged"] == 1
    text = run_gc_process(gc_server, "--dry-run", **settings)
    assert text.returncode == 0
    assert f"would delete tag {retained}:a-old" in text.stdout
    assert f"would delete blob {loose}" in text.stdout
    assert with_storage(gc_server, snapshot) == before

    real = run_gc(gc_server, wait=False, **settings)

    for key in ("tags_deleted", "manifests_deleted", "blobs_deleted"):
        assert sorted(real[key]) == sorted(dry[key]), key
    for key in ("bytes_freed", "links_deleted", "uploads_purged"):
        assert real[key] == dry[key], key
    with gc_server.client() as client:
        assert client.get(session).status_code == 404
        assert client.head(f"/v2/{repo}/manifests/keep").status_code == 200
        assert client.get(f"/v2/{retained}/tags/list").json()["tags"] == ["b-new"]


def test_gc_exits_75_while_another_collection_holds_the_lease(
    gc_server: RegistryServer,
) -> None:
    record = json.dumps({"owner": "another-host", "ttl": 3600}).encode()
    with_storage(gc_server, lambda d: d.put(layout.gc_lease(), record))
    try:
        done = run_gc_process(gc_server)
        assert done.returncode == EXIT_BUSY
        assert "another garbage collection holds the lease" in done.stderr
    finally:
        with_storage(gc_server, lambda d: d.delete(layout.gc_lease()))
    assert run_gc_process(gc_server).returncode == 0


def test_invalid_gc_configuration_exits_2(gc_server: RegistryServer) -> None:
    done = run_gc_process(gc_server, REGISTRY_GC_GRACE_PERIOD="soon")
    assert done.returncode == 2
    assert "gc.grace_period" in done.stderr
