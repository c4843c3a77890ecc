"""Pull rules: this registry (in this process) mirrors a remote -- another `registry
serve`, and CNCF distribution 2.8 -- over the distribution API only: tags new and moved,
indexes whole, referrers, listings followed page by page, deletions only where enabled;
on a rule's interval, and from `registry replicate run`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.replication import endpoints
from tests.asgi_registry import InProcessRegistry
from tests.distribution import DistributionServer
from tests.faults import FaultProxy
from tests.images import OCI_INDEX, Image, image, index, push_image
from tests.replication.conftest import arrived, get_manifest, serve, tag_gone, unique, wait_until
from tests.server import RegistryServer


def pull_rule(name: str, url: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "direction": "pull", "remote": {"url": url}, **fields}


def push_referrer(remote: httpx.Client, repository: str, subject: Image, foreign: bool) -> Image:
    """An SBOM of ``subject``; on a registry without the referrers API also listed in the
    referrers tag schema's index, as OCI clients do."""
    sbom = image(layers=1, subject=subject, artifact_type="application/spdx+json")
    push_image(remote, repository, sbom)
    if foreign:
        fallback = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": sbom.media_type,
                    "digest": sbom.digest,
                    "size": len(sbom.manifest),
                    "artifactType": "application/spdx+json",
                }
            ],
        }
        tag = f"sha256-{subject.digest.split(':')[1]}"
        r = remote.put(
            f"/v2/{repository}/manifests/{tag}",
            content=json.dumps(fallback).encode(),
            headers={"Content-Type": OCI_INDEX},
        )
        assert r.status_code == 201, r.text
    return sbom


def untag(remote: httpx.Client, repository: str, tag: str, digest: str, foreign: bool) -> None:
    # distribution 2.8 cannot delete a tag alone: the manifest goes (no other tag names it).
    target = digest if foreign else tag
    assert remote.delete(f"/v2/{repository}/manifests/{target}").status_code == 202


@pytest.fixture(params=["registry", "distribution"])
def remote(
    request: pytest.FixtureRequest, site_b: RegistryServer, distribution: DistributionServer
) -> RegistryServer | DistributionServer:
    return site_b if request.param == "registry" else distribution


def test_a_pull_rule_mirrors_moves_and_deletions_only_where_enabled(
    remote: RegistryServer | DistributionServer,
    make_registry: Callable[..., InProcessRegistry],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    foreign = isinstance(remote, DistributionServer)
    proxy = FaultProxy(remote.url).start()  # counts the listing pages
    request.addfinalizer(proxy.stop)
    monkeypatch.setattr(endpoints, "REMOTE_PAGE", 2)
    prefix = unique("pull")
    repo = f"{prefix}/app"
    v1, v2, other = image(), image(layers=1), image()
    multi = index([image(), image()])
    with remote.client() as r:
        push_image(r, repo, v1, "v1")
        push_image(r, repo, v2, "v2")
        push_image(r, repo, multi, "multi")
        push_image(r, repo, other, "dev")  # not selected
        sbom = push_referrer(r, repo, v1, foreign)
    pattern = {"include": [f"{prefix}/**"]}  # a wildcard: the remote's catalog is listed
    tags = {"include": ["v*", "multi"]}
    a = make_registry(
        {
            "replication": {
                "rules": [
                    pull_rule(
                        "mirror",
                        proxy.url,
                        repositories=pattern,
                        tags=tags,
                        deletes=True,
                        mapping={"prefix": "mirror/"},
                    ),
                    pull_rule(
                        "keep",
                        proxy.url,
                        repositories=pattern,
                        tags=tags,
                        mapping={"prefix": "keep/"},
                    ),
                ]
            }
        }
    )
    service = a.app.state.replication
    for rule in ("mirror", "keep"):
        run = a.run(service.run_now(rule))
        assert run.outcome == "ok", run.error
    if not foreign:  # distribution 2.8 ignores n and answers every tag at once
        assert proxy.count("GET", f"/v2/{repo}/tags/list") >= 2 * 2  # 4 tags, 2 per page
    with a.client() as c:
        for side in ("mirror", "keep"):
            assert arrived(c, f"{side}/{repo}", "v1", v1.manifest)
            assert arrived(c, f"{side}/{repo}", "v2", v2.manifest)
            assert arrived(c, f"{side}/{repo}", "multi", multi.manifest)
            for child in multi.children:
                assert arrived(c, f"{side}/{repo}", child.digest, child.manifest)
            assert tag_gone(c, f"{side}/{repo}", "dev")
            listed = c.get(f"/v2/{side}/{repo}/referrers/{v1.digest}").json()["manifests"]
            assert [d["digest"] for d in listed] == [sbom.digest]

    moved = image()
    with remote.client() as r:
        push_image(r, repo, moved, "v1")
        untag(r, repo, "v2", v2.digest, foreign)
    for rule in ("mirror", "keep"):
        run = a.run(service.run_now(rule))
        assert run.outcome == "ok", run.error
    with a.client() as c:
        assert arrived(c, f"mirror/{repo}", "v1", moved.manifest)
        assert arrived(c, f"keep/{repo}", "v1", moved.manifest)
        assert tag_gone(c, f"mirror/{repo}", "v2")
        assert arrived(c, f"keep/{repo}", "v2", v2.manifest)
        doc = c.get("/api/replication", params={"rule": "mirror"}).json()["rules"][0]
    assert doc["last_run"]["tally"]["deletes"] == 1 and doc["last_run"]["trigger"] == "manual"
    assert doc["totals"]["artifacts"] >= 5


def test_a_pull_rule_runs_on_its_interval(
    site_b: RegistryServer, make_registry: Callable[..., InProcessRegistry]
) -> None:
    repo = unique("interval") + "/app"
    first, second = image(), image()
    with site_b.client() as r:
        push_image(r, repo, first, "v1")
    rule = pull_rule(
        "often", site_b.url, repositories={"include": [repo]}, trigger={"interval": "1s"}
    )
    a = make_registry({"replication": {"rules": [rule]}})
    with a.client() as c:
        wait_until(lambda: arrived(c, repo, "v1", first.manifest), what="the first pass")
        with site_b.client() as r:
            push_image(r, repo, second, "v1")
        wait_until(lambda: arrived(c, repo, "v1", second.manifest), what="a later pass")
        doc = c.get("/api/replication").json()["rules"][0]
    assert doc["last_run"]["trigger"] == "schedule" and doc["next_run"] is not None


def test_registry_replicate_run_from_the_command_line(
    request: pytest.FixtureRequest, tmp_path: Path, distribution: DistributionServer
) -> None:
    repo = unique("cli") + "/app"
    img = image()
    with distribution.client() as r:
        push_image(r, repo, img, "v1")
    rule = pull_rule("from-dist", distribution.url, repositories={"include": [repo]})
    a = serve(request, tmp_path / "a", {"replication": {"rules": [rule]}})

    def replicate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "registry",
                "replicate",
                *args,
                "--config",
                str(a.config_file),
                "--data-dir",
                str(a.data_dir),
            ],
            capture_output=True,
            text=True,
            check=False,
        )

    done = replicate("run", "from-dist")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("from-dist: ok in ") and "1 copied" in done.stdout
    with a.client() as c:
        assert arrived(c, repo, "v1", img.manifest)
        assert get_manifest(c, repo, img.digest).headers["docker-content-digest"] == img.digest
    unknown = replicate("run", "nope")
    assert unknown.returncode == 2 and "no rule named 'nope'" in unknown.stderr
    status = replicate("status", "--json")
    [doc] = json.loads(status.stdout)["rules"]
    assert doc["last_run"]["outcome"] == "ok" and doc["totals"]["artifacts"] == 1
