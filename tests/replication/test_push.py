"""Push rules between two `registry serve` processes (and into CNCF distribution 2.8, a
foreign registry that only speaks the distribution API): what is pushed to A appears on
B with identical digests, referrers included; a multi-arch index arrives whole; deletes
replicate only where enabled; credentials stay out of the logs; status and metrics say
what happened. One site A with several rules serves the whole module; each test has
repositories of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.auth.conftest import PASSWORD, get_token, token_client
from tests.distribution import DistributionServer
from tests.images import Image, image, index, push_image
from tests.replication.conftest import (
    arrived,
    get_manifest,
    push_rule,
    serve,
    site,
    tag_gone,
    unique,
    wait_until,
)
from tests.server import RegistryServer


@pytest.fixture(scope="module")
def site_a(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    site_b: RegistryServer,
    auth_b: RegistryServer,
    distribution: DistributionServer,
) -> RegistryServer:
    workdir = tmp_path_factory.mktemp("site-a")
    password_file = workdir / "remote-password"
    password_file.write_text(PASSWORD + "\n")
    rules = [
        push_rule("to-b", site_b.url, repositories={"include": ["push/**"]}),
        push_rule(
            "mirror",
            site_b.url,
            repositories={"include": ["del/**"]},
            mapping={"strip": "del/", "prefix": "mirror/"},
            deletes=True,
        ),
        push_rule(
            "keep",
            site_b.url,
            repositories={"include": ["del/**"]},
            mapping={"strip": "del/", "prefix": "keep/"},
        ),
        push_rule("to-distribution", distribution.url, repositories={"include": ["foreign/**"]}),
        push_rule(
            "to-auth",
            auth_b.url,
            repositories={"include": ["auth/**"]},
            mapping={"strip": "auth/", "prefix": "team-a/"},
            chunk_size="64KiB",
        ),
    ]
    rules[-1]["remote"]["credentials"] = {"username": "alice", "password_file": str(password_file)}
    return serve(request, workdir, site(rules))


def blob(client: httpx.Client, repository: str, digest: str) -> bytes | None:
    r = client.get(f"/v2/{repository}/blobs/{digest}")
    return r.content if r.status_code == 200 else None


def assert_same_image(client: httpx.Client, repository: str, img: Image) -> None:
    """Every manifest and blob of ``img`` is on the target, byte for byte."""
    r = get_manifest(client, repository, img.digest)
    assert r.status_code == 200 and r.content == img.manifest
    assert r.headers["docker-content-digest"] == img.digest
    for digest, data in img.blobs.items():
        assert blob(client, repository, digest) == data
    for child in img.children:
        assert_same_image(client, repository, child)


def referrer_digests(client: httpx.Client, repository: str, subject: str) -> set[str]:
    r = client.get(f"/v2/{repository}/referrers/{subject}")
    return {d["digest"] for d in r.json()["manifests"]} if r.status_code == 200 else set()


def test_a_push_arrives_with_identical_digests_referrers_included(
    site_a: RegistryServer, site_b: RegistryServer
) -> None:
    repo = unique("push/app")
    img = image(layers=3)
    sbom = image(layers=1, subject=img, artifact_type="application/spdx+json")
    signature = image(layers=1)
    signature_tag = f"sha256-{img.digest.split(':')[1]}.sig"
    with site_a.client() as a:
        push_image(a, repo, img, "v1")
        push_image(a, repo, sbom)  # by digest, with a subject: a referrer
        push_image(a, repo, signature, signature_tag)  # cosign's tag scheme
    with site_b.client() as b:
        wait_until(lambda: arrived(b, repo, "v1", img.manifest), what="v1 on B")
        wait_until(lambda: referrer_digests(b, repo, img.digest) == {sbom.digest}, what="sbom")
        wait_until(lambda: arrived(b, repo, signature_tag, signature.manifest), what="signature")
        for m in (img, sbom, signature):
            assert_same_image(b, repo, m)


def test_a_multi_arch_index_arrives_whole(site_a: RegistryServer, site_b: RegistryServer) -> None:
    repo = unique("push/multi")
    multi = index([image(), image(layers=1)])
    attestation = image(layers=1, subject=multi, artifact_type="application/vnd.in-toto+json")
    with site_a.client() as a:
        push_image(a, repo, multi, "latest")
        push_image(a, repo, attestation)
    with site_b.client() as b:
        wait_until(lambda: arrived(b, repo, "latest", multi.manifest), what="the index")
        assert_same_image(b, repo, multi)  # both children and all their blobs
        wait_until(lambda: referrer_digests(b, repo, multi.digest) == {attestation.digest})


def test_a_foreign_target_gets_the_same_digests(
    site_a: RegistryServer, distribution: DistributionServer
) -> None:
    repo = unique("foreign/app")
    img, multi = image(layers=2, docker=True), index([image(), image()])
    sbom = image(layers=1, subject=img, artifact_type="application/spdx+json")
    with site_a.client() as a:
        push_image(a, repo, img, "v1")
        push_image(a, repo, multi, "multi")
        push_image(a, repo, sbom)
    with distribution.client() as d:
        wait_until(lambda: arrived(d, repo, "v1", img.manifest), what="v1 on distribution")
        wait_until(lambda: arrived(d, repo, "multi", multi.manifest), what="index")
        assert_same_image(d, repo, img)
        assert_same_image(d, repo, multi)
        # distribution 2.8 has no referrers API: the referrers tag schema's index lists it.
        fallback = f"sha256-{img.digest.split(':')[1]}"

        def listed() -> bool:
            r = get_manifest(d, repo, fallback)
            return r.status_code == 200 and sbom.digest in r.text

        wait_until(listed, what="the referrers tag index")
        assert_same_image(d, repo, sbom)


def test_deletes_replicate_only_when_enabled(
    site_a: RegistryServer, site_b: RegistryServer
) -> None:
    name = unique("x")
    one, two, marker = image(), image(), image()
    with site_a.client() as a, site_b.client() as b:
        push_image(a, f"del/{name}", one, "v1")
        push_image(a, f"del/{name}", two, "v2")
        for prefix in ("mirror", "keep"):
            wait_until(lambda p=prefix: arrived(b, f"{p}/{name}", "v1", one.manifest))
            wait_until(lambda p=prefix: arrived(b, f"{p}/{name}", "v2", two.manifest))

        assert a.delete(f"/v2/del/{name}/manifests/v1").status_code == 202  # a tag
        assert a.delete(f"/v2/del/{name}/manifests/{two.digest}").status_code == 202
        push_image(a, f"del/{name}", marker, "marker")  # after the deletes, in order

        wait_until(lambda: tag_gone(b, f"mirror/{name}", "v1"), what="v1 deleted")
        wait_until(lambda: tag_gone(b, f"mirror/{name}", two.digest), what="v2 deleted")
        assert arrived(b, f"mirror/{name}", one.digest, one.manifest)  # untagged, not gone
        wait_until(lambda: arrived(b, f"keep/{name}", "marker", marker.manifest))
        assert arrived(b, f"keep/{name}", "v1", one.manifest)
        assert arrived(b, f"keep/{name}", "v2", two.manifest)


def test_retention_deletes_replicate_where_deletes_are_enabled(
    request: pytest.FixtureRequest, tmp_path: Path, site_b: RegistryServer
) -> None:
    prefix = unique("ret").replace("/", "-")
    rules = [
        push_rule("mirror", site_b.url, mapping={"prefix": f"{prefix}/mirror/"}, deletes=True),
        push_rule("keep", site_b.url, mapping={"prefix": f"{prefix}/keep/"}),
    ]
    # The collector runs every 2 s and keeps the newest tag of each repository.
    gc = {"interval": "2s", "grace_period": "0s", "retention": [{"keep_last": 1}]}
    a = serve(request, tmp_path / "a", site(rules, gc=gc))
    old, new = image(), image()
    with a.client() as c, site_b.client() as b:
        push_image(c, "team/app", old, "v1")
        for rule in ("mirror", "keep"):  # before v2 exists, retention keeps v1
            wait_until(lambda r=rule: arrived(b, f"{prefix}/{r}/team/app", "v1", old.manifest))
        push_image(c, "team/app", new, "v2")
        wait_until(lambda: tag_gone(c, "team/app", "v1"), what="retention on A")
        wait_until(lambda: tag_gone(b, f"{prefix}/mirror/team/app", "v1"), what="delete on B")
        assert arrived(b, f"{prefix}/mirror/team/app", "v2", new.manifest)
        assert arrived(b, f"{prefix}/keep/team/app", "v1", old.manifest)


def test_credentials_work_and_stay_out_of_the_log(
    site_a: RegistryServer, auth_b: RegistryServer
) -> None:
    name = unique("app").replace("/", "-")  # alice writes team-a/* (one level)
    img = image(layers=2, layer_size=300_000)  # above the rule's 64 KiB chunks
    with site_a.client() as a:
        push_image(a, f"auth/{name}", img, "v1")
    with auth_b.client() as c:
        token = get_token(c, f"repository:team-a/{name}:pull", user="admin")
    with token_client(auth_b, token) as b:
        wait_until(lambda: arrived(b, f"team-a/{name}", "v1", img.manifest), what="on B")
        assert_same_image(b, f"team-a/{name}", img)
    assert PASSWORD not in site_a.log()
    assert PASSWORD not in (site_a.workdir / "config.yml").read_text()


def test_status_and_metrics_say_what_happened(
    site_a: RegistryServer, site_b: RegistryServer
) -> None:
    repo = unique("push/status")
    img = image(layers=1)
    with site_a.client() as a, site_b.client() as b:
        push_image(a, repo, img, "v1")
        wait_until(lambda: arrived(b, repo, "v1", img.manifest))

        def delivered() -> dict[str, object] | None:
            doc = a.get("/api/replication", params={"rule": "to-b"}).json()["rules"][0]
            last = doc["last_delivery"]
            return doc if last and last["outcome"] == "ok" and doc["totals"]["artifacts"] else None

        doc = wait_until(delivered, what="a delivery in the status")
        assert doc["events"]["queued"] == 0 and doc["events"]["attempts"] == 0
        assert doc["failing"] == 0 and doc["totals"]["bytes"] > 0
        assert a.get("/api/replication", params={"rule": "nope"}).status_code == 404
        metrics = a.get("/metrics").text
        assert 'registry_replication_artifacts_total{rule="to-b"}' in metrics
        assert 'registry_replication_blobs_total{how="copied",rule="to-b"}' in metrics
        assert 'registry_events_delivered_total{consumer="replication/to-b"}' in metrics
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "registry",
            "replicate",
            "status",
            "--json",
            "--config",
            str(site_a.config_file),
            "--data-dir",
            str(site_a.data_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rules = {r["name"]: r for r in json.loads(done.stdout)["rules"]}
    assert set(rules) == {"to-b", "mirror", "keep", "to-distribution", "to-auth"}
    assert rules["to-b"]["totals"]["artifacts"] >= 1
    text = subprocess.run(
        [
            sys.executable,
            "-m",
            "registry",
            "replicate",
            "status",
            "to-b",
            "--config",
            str(site_a.config_file),
            "--data-dir",
            str(site_a.data_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert text.startswith(f"to-b: push to {site_b.url} (events)")
    assert "last delivery: ok" in text


def test_the_status_endpoint_is_for_admins(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from tests.auth.conftest import auth_section

    config = {"auth": auth_section(tmp_path, "basic")}
    server = serve(request, tmp_path / "site", config)
    with server.client() as c:
        assert c.get("/api/replication").status_code == 401
        assert c.get("/api/replication", auth=("alice", PASSWORD)).status_code == 403
        r = c.get("/api/replication", auth=("admin", PASSWORD))
        assert r.status_code == 200 and r.json() == {"rules": []}
