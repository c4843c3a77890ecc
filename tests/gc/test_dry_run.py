"""``registry gc --dry-run`` changes nothing and lists what a collection then deletes;
what ``registry gc`` prints (what went, what the grace period holds back, the summary
once); the command's exit status when another collection holds the lease."""

from __future__ import annotations

import json
import os
import re
import uuid

from registry.gc.report import format_size
from registry.reference import parse_digest
from registry.store import RegistryStore
from tests.gc.collection import (
    EXIT_BUSY,
    make_image,
    run_gc,
    run_gc_process,
)
from tests.gc.storage import snapshot, with_storage, with_store
from tests.images import push_blob, push_image, sha256
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
    before = with_storage(gc_server, snapshot)

    dry = run_gc(gc_server, dry_run=True, **settings)

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
    assert dry["blob_sizes"][loose] == 100
    # The command: retention does not wait for the grace period; what does is listed
    # as held back or as would-be deleted, depending on how long ago it was pushed.
    text = run_gc_process(gc_server, "--dry-run", **settings)
    assert text.returncode == 0, text.stderr
    assert f"would delete tag {retained}:a-old" in text.stdout
    assert f"blob {loose} (100 B)" in text.stdout
    assert text.stdout.count("finished in") == 1, text.stdout
    assert "gc dry run finished in" in text.stdout
    assert "nothing deleted: would delete" in text.stdout
    assert with_storage(gc_server, snapshot) == before

    real = run_gc(gc_server, **settings)

    for key in ("tags_deleted", "manifests_deleted", "blobs_deleted"):
        assert sorted(real[key]) == sorted(dry[key]), key
    for key in ("bytes_freed", "links_deleted", "uploads_purged"):
        assert real[key] == dry[key], key
    with gc_server.client() as client:
        assert client.get(session).status_code == 404
        assert client.head(f"/v2/{repo}/manifests/keep").status_code == 200
        assert client.get(f"/v2/{retained}/tags/list").json()["tags"] == ["b-new"]


def test_gc_right_after_a_tag_delete_says_what_the_grace_period_holds_back(
    gc_server: RegistryServer,
) -> None:
    """Issue 10, item 18: zeros, and why, and until when."""
    repo = f"held/{uuid.uuid4().hex[:8]}"
    layer = os.urandom(3000)
    img = make_image([layer])
    with gc_server.client() as client:
        push_image(client, repo, img, "v1")
        assert client.delete(f"/v2/{repo}/manifests/v1").status_code == 202

    done = run_gc_process(gc_server, REGISTRY_GC_GRACE_PERIOD="1h")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    summary = lines[-1]
    # (The module's server holds the other tests' images too, all pushed just now.)
    assert summary.startswith("gc run finished in") and "deleted 0 blobs (0 B)" in summary
    assert re.search(r"held back by the grace period \(1h\): \d+ manifests? and \d+ blobs", summary)
    assert " UTC at most" in summary
    assert done.stdout.count("finished in") == 1, done.stdout + done.stderr
    assert "finished in" not in done.stderr
    held = [ln for ln in lines if ln.startswith("held back until ")]
    assert f"manifest {repo}@{img.digest}" in "\n".join(held)
    assert f"blob {sha256(layer)} ({format_size(3000)})" in "\n".join(held)
    # And nothing went: the image is still whole.
    assert with_store(gc_server, lambda store: store.blobs.exists(parse_digest(sha256(layer))))


def test_gc_exits_75_while_another_collection_holds_the_lease(
    gc_server: RegistryServer,
) -> None:
    async def hold(store: RegistryStore) -> None:
        assert await store.lease("gc", 3600, owner="another-host", settle=0.2).acquire()

    async def release(store: RegistryStore) -> None:
        await store.lease("gc", 3600, owner="another-host").release()

    with_store(gc_server, hold)
    try:
        done = run_gc_process(gc_server)
        assert done.returncode == EXIT_BUSY
        assert "another garbage collection holds the lease" in done.stderr
    finally:
        with_store(gc_server, release)
    assert run_gc_process(gc_server).returncode == 0


def test_invalid_gc_configuration_exits_2(gc_server: RegistryServer) -> None:
    done = run_gc_process(gc_server, REGISTRY_GC_GRACE_PERIOD="soon")
    assert done.returncode == 2
    assert "gc.grace_period" in done.stderr
