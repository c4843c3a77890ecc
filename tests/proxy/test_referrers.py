"""Referrers through the cache: the upstream's list (its API, or distribution's referrers
tag schema) is kept for the TTL and filtered here; the referrers are cached by digest;
a failing upstream gets the kept list with a Warning."""

from __future__ import annotations

import time

import pytest

from registry.reference import parse_digest
from registry.remote import referrers_tag
from tests.images import image
from tests.proxy.conftest import Upstreams, repo_name
from tests.remote.test_reads import referrers_index
from tests.server import RegistryServer

SIG, SBOM = "application/vnd.example.sig", "application/vnd.example.sbom"


@pytest.mark.parametrize("which", ["reg", "dist"])
def test_referrers_are_proxied_and_kept_for_the_ttl(
    cache: RegistryServer, upstreams: Upstreams, which: str
) -> None:
    repo = repo_name()
    subject = image(layers=1)
    sig = image(layers=1, subject=subject, artifact_type=SIG)
    sbom = image(layers=1, subject=subject, artifact_type=SBOM)
    upstreams.seed(which, repo, subject)
    upstreams.seed(which, repo, sig, tag=None)
    upstreams.seed(which, repo, sbom, tag=None)
    if which == "dist":  # distribution 2.8: the tag schema, as clients without the API do
        tag = referrers_tag(parse_digest(subject.digest))
        upstreams.seed(which, repo, referrers_index(sig, sbom), tag=tag)
    namespace = "ttl" if which == "reg" else "dist"  # ttl/: reg with a 1 s TTL
    url = f"/v2/{namespace}/{repo}/referrers/{subject.digest}"
    front = upstreams.front(which)
    with cache.client() as c:
        r = c.get(url)
        assert r.status_code == 200, r.text
        assert {d["digest"] for d in r.json()["manifests"]} == {sig.digest, sbom.digest}
        front.clear()
        r = c.get(url, params={"artifactType": SIG})
        assert [d["digest"] for d in r.json()["manifests"]] == [sig.digest]
        assert r.headers["oci-filters-applied"] == "artifactType"
        # The referrers themselves: manifests, cached by digest.
        assert c.get(f"/v2/{namespace}/{repo}/manifests/{sig.digest}").content == sig.manifest
        assert c.get(f"/v2/{namespace}/{repo}/manifests/{sig.digest}").content == sig.manifest
        assert front.count("GET", "/referrers/") == 0
        assert front.count("GET", "/manifests/") == 1
        if which == "reg":
            time.sleep(1.1)
            front.fault(path="/referrers/", status=503, times=None)
            r = c.get(url)
            assert r.status_code == 200 and r.headers["warning"].startswith("110 ")
            assert {d["digest"] for d in r.json()["manifests"]} == {sig.digest, sbom.digest}
