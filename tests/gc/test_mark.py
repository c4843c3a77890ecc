"""What a collection keeps and deletes, through a real server and ``registry gc``, on
every backend: shared layers, index children, referrers, deleted tags, mounts,
unreferenced uploads, the untagged policy."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import httpx
import pytest
import yaml

from registry.reference import parse_digest
from tests.gc.collection import (
    blob_status,
    make_image,
    make_index,
    manifest_status,
    pull_verified,
    run_gc,
)
from tests.gc.storage import with_storage, with_store
from tests.images import push_blob, push_image, sha256
from tests.server import RegistryServer

SIGNATURE = "application/vnd.example.signature"
SBOM = "application/vnd.example.sbom"


@pytest.fixture
def gc_client(gc_server: RegistryServer) -> Iterator[httpx.Client]:
    with gc_server.client() as c:
        yield c


def name(kind: str) -> str:
    return f"gc/{kind}/{uuid.uuid4().hex[:10]}"


def stored(server: RegistryServer, digest: str) -> bool:
    return with_store(server, lambda store: store.blobs.exists(parse_digest(digest)))


def test_shared_layer_survives_when_one_repository_drops_it(
    gc_server: RegistryServer, gc_client: httpx.Client
) -> None:
    shared, only_a, only_b = os.urandom(3000), os.urandom(2000), os.urandom(1000)
    a, b = make_image([shared, only_a]), make_image([shared, only_b])
    repo_a, repo_b = name("shared-a"), name("shared-b")
    push_image(gc_client, repo_a, a, "v1")
    push_image(gc_client, repo_b, b, "v1")
    assert gc_client.delete(f"/v2/{repo_a}/manifests/v1").status_code == 202

    report = run_gc(gc_server)

    pull_verified(gc_client, repo_b, "v1")
    assert stored(gc_server, sha256(shared))
    for gone in [a.digest, *a.blobs]:
        if gone != sha256(shared):
            assert not stored(gc_server, gone), gone
            assert gone in report["blobs_deleted"]
    assert f"{repo_a}@{a.digest}" in report["manifests_deleted"]
    assert manifest_status(gc_client, repo_a, a.digest) == 404
    # Repository a no longer holds the shared layer either: its link went with its image.
    assert blob_status(gc_client, repo_a, sha256(shared)) == 404
    assert blob_status(gc_client, repo_b, sha256(shared)) == 200
    assert sha256(shared) not in report["blobs_deleted"]


def test_index_children_are_kept_with_the_index_and_go_with_it(
    gc_server: RegistryServer, gc_client: httpx.Client
) -> None:
    repo = name("index")
    amd, arm = make_image([os.urandom(1500)]), make_image([os.urandom(1500)])
    inner = make_index([amd, arm])
    outer = make_index([inner, make_image([os.urandom(500)])])  # an index of an index
    stray = make_image([os.urandom(700)])
    push_image(gc_client, repo, outer, "multi")
    push_image(gc_client, repo, stray)  # by digest only: nothing reaches it

    report = run_gc(gc_server)

    pulled = pull_verified(gc_client, repo, "multi")
    assert {inner.digest, amd.digest, arm.digest} <= set(pulled)
    assert report["manifests_deleted"] == [f"{repo}@{stray.digest}"]
    assert not stored(gc_server, stray.digest)

    assert gc_client.delete(f"/v2/{repo}/manifests/multi").status_code == 202
    report = run_gc(gc_server)
    gone = {outer.digest, inner.digest, amd.digest, arm.digest}
    assert {f"{repo}@{d}" for d in gone} <= set(report["manifests_deleted"])
    for digest in [*gone, *amd.blobs, *arm.blobs]:
        assert not stored(gc_server, digest), digest


def test_referrers_of_kept_manifests_are_kept(
    gc_server: RegistryServer, gc_client: httpx.Client
) -> None:
    repo = name("referrers")
    subject = make_image([os.urandom(1200)])
    signature = make_image([os.urandom(100)], subject=subject, artifact_type=SIGNATURE)
    sbom = make_image([os.urandom(300)], subject=subject, artifact_type=SBOM)
    sbom_signature = make_image([os.urandom(100)], subject=sbom, artifact_type=SIGNATURE)
    orphan_subject = make_image([os.urandom(100)])  # never pushed
    orphan = make_image([os.urandom(100)], subject=orphan_subject, artifact_type=SIGNATURE)
    push_image(gc_client, repo, subject, "v1")
    for referrer in (signature, sbom, sbom_signature, orphan):
        push_image(gc_client, repo, referrer)  # untagged, as signing tools push them

    report = run_gc(gc_server)

    for img in (subject, signature, sbom, sbom_signature):
        pull_verified(gc_client, repo, img.digest)
    listed = gc_client.get(f"/v2/{repo}/referrers/{subject.digest}").json()["manifests"]
    assert {d["digest"] for d in listed} == {signature.digest, sbom.digest}
    assert report["manifests_deleted"] == [f"{repo}@{orphan.digest}"]

    assert gc_client.delete(f"/v2/{repo}/manifests/v1").status_code == 202
    report = run_gc(gc_server)
    for img in (subject, signature, sbom, sbom_signature):
        assert f"{repo}@{img.digest}" in report["manifests_deleted"]
        assert manifest_status(gc_client, repo, img.digest) == 404
    assert gc_client.get(f"/v2/{repo}/referrers/{subject.digest}").json()["manifests"] == []


def test_a_deleted_tag_releases_only_what_no_other_tag_uses(
    gc_server: RegistryServer, gc_client: httpx.Client
) -> None:
    repo = name("tags")
    kept, dropped, twice = (make_image([os.urandom(800)]) for _ in range(3))
    push_image(gc_client, repo, kept, "keep")
    push_image(gc_client, repo, dropped, "drop")
    push_image(gc_client, repo, twice, "one")
    push_image(gc_client, repo, twice, "two")
    for tag in ("drop", "one"):
        assert gc_client.delete(f"/v2/{repo}/manifests/{tag}").status_code == 202

    report = run_gc(gc_server)

    pull_verified(gc_client, repo, "keep")
    pull_verified(gc_client, repo, "two")
    assert report["manifests_deleted"] == [f"{repo}@{dropped.digest}"]
    assert set(report["blobs_deleted"]) >= {dropped.digest, *dropped.blobs}
    assert not set(report["blobs_deleted"]) & {kept.digest, twice.digest, *kept.blobs}


def test_mounted_blobs_survive_their_source(
    gc_server: RegistryServer, gc_client: httpx.Client
) -> None:
    source, target = name("mount-src"), name("mount-dst")
    layer = os.urandom(4000)
    original = make_image([layer])
    push_image(gc_client, source, original, "v1")
    r = gc_client.post(
        f"/v2/{target}/blobs/uploads/", params={"mount": sha256(layer), "from": source}
    )
    assert r.status_code == 201, r.text
    derived = make_image([layer])
    for digest, data in derived.blobs.items():
        if digest != sha256(layer):
            push_blob(gc_client, target, data)
    r = gc_client.put(
        f"/v2/{target}/manifests/v1",
        content=derived.manifest,
        headers={"Content-Type": derived.media_type},
    )
    assert r.status_code == 201, r.text
    assert gc_client.delete(f"/v2/{source}/manifests/v1").status_code == 202

    report = run_gc(gc_server)

    pull_verified(gc_client, target, "v1")
    assert blob_status(gc_client, source, sha256(layer)) == 404
    assert sha256(layer) not in report["blobs_deleted"]
    assert f"{source}@{original.digest}" in report["manifests_deleted"]


def test_an_unreferenced_upload_goes_only_after_the_grace_period(
    gc_server: RegistryServer, gc_client: httpx.Client
) -> None:
    repo = name("upload")
    digest = push_blob(gc_client, repo, os.urandom(5000))

    report = run_gc(gc_server, REGISTRY_GC_GRACE_PERIOD="1h")
    assert digest not in report["blobs_deleted"]
    assert blob_status(gc_client, repo, digest) == 200

    report = run_gc(gc_server)
    assert digest in report["blobs_deleted"]
    assert report["bytes_freed"] >= 5000
    assert blob_status(gc_client, repo, digest) == 404
    assert not stored(gc_server, digest)


def test_untagged_policy(gc_server: RegistryServer, gc_client: httpx.Client) -> None:
    repo = name("untagged")
    img = make_image([os.urandom(900)])
    push_image(gc_client, repo, img)  # by digest: untagged from the start

    run_gc(gc_server, REGISTRY_GC_UNTAGGED_POLICY="keep")
    pull_verified(gc_client, repo, img.digest)
    run_gc(gc_server, REGISTRY_GC_UNTAGGED_OLDER_THAN="1h")
    pull_verified(gc_client, repo, img.digest)

    report = run_gc(gc_server, REGISTRY_GC_UNTAGGED_OLDER_THAN="0s")
    assert report["manifests_deleted"] == [f"{repo}@{img.digest}"]
    assert manifest_status(gc_client, repo, img.digest) == 404
    for digest in img.blobs:
        assert not stored(gc_server, digest)


def test_a_tag_whose_revision_is_gone_keeps_its_blobs(
    gc_server: RegistryServer, gc_client: httpx.Client
) -> None:
    """Damage (a revision deleted by hand) makes the collector conservative, not stuck."""
    repo = name("damaged")
    img = make_image([os.urandom(600)])
    push_image(gc_client, repo, img, "v1")
    # By hand, from the documented layout.
    revision = f"repositories/{repo}/_manifests/revisions/sha256/{img.digest.split(':')[1]}"
    with_storage(gc_server, lambda d: d.delete(revision))

    report = run_gc(gc_server)

    assert report["complete"] is True
    assert manifest_status(gc_client, repo, "v1") == 404
    for digest in img.blobs:
        assert digest not in report["blobs_deleted"]
        assert blob_status(gc_client, repo, digest) == 200


def test_expired_upload_sessions_are_purged(
    request: pytest.FixtureRequest, gc_server: RegistryServer, gc_client: httpx.Client
) -> None:
    repo = name("sessions")
    session = gc_client.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
    # Larger than a part, so that on S3 a multipart upload is open.
    r = gc_client.patch(
        session,
        content=os.urandom(17 * 1024 * 1024),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 202, r.text

    report = run_gc(gc_server)  # default expiry: 24 h
    assert report["uploads_purged"] == 0
    assert gc_client.get(session).status_code == 204

    report = run_gc(gc_server, REGISTRY_UPLOADS_EXPIRY="0s")
    assert report["uploads_purged"] == 1
    assert gc_client.get(session).status_code == 404
    config = yaml.safe_load(gc_server.config_file.read_text())
    if config.get("storage", {}).get("driver") == "s3":
        rgw = request.getfixturevalue("rgw")
        prefix = config["storage"]["s3"]["prefix"]
        open_uploads = rgw.client().list_multipart_uploads(
            Bucket=rgw.bucket, Prefix=f"{prefix}/repositories/{repo}/_uploads"
        )
        assert not open_uploads.get("Uploads")
