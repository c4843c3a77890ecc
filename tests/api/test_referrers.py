"""GET /v2/<name>/referrers/<digest>: an index of the manifests whose subject it is."""

from __future__ import annotations

import httpx

from tests.images import OCI_INDEX, image, index, push_image, sha256

SBOM = "application/vnd.example.sbom"
SIG = "application/vnd.example.signature"


def test_no_referrers_is_an_empty_index(client: httpx.Client, repo: str) -> None:
    for subject in (sha256(b"never pushed"),):
        r = client.get(f"/v2/{repo}/referrers/{subject}")
        assert r.status_code == 200
        assert r.headers["Content-Type"] == OCI_INDEX
        assert r.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


def test_referrers_are_listed_and_filtered(client: httpx.Client, repo: str) -> None:
    subject = image()
    push_image(client, repo, subject, tag="v1")
    sbom = image(layers=1, subject=subject, artifact_type=SBOM, annotations={"k": "v"})
    sig = image(layers=1, subject=subject, artifact_type=SIG)
    plain = image(layers=1, subject=subject)  # artifactType falls back to the config type
    for img in (sbom, sig, plain):
        push_image(client, repo, img)
    r = client.get(f"/v2/{repo}/referrers/{subject.digest}")
    assert r.status_code == 200
    got = {d["digest"]: d for d in r.json()["manifests"]}
    assert set(got) == {sbom.digest, sig.digest, plain.digest}
    assert got[sbom.digest]["artifactType"] == SBOM
    assert got[sbom.digest]["annotations"] == {"k": "v"}
    assert got[sbom.digest]["size"] == len(sbom.manifest)
    assert got[plain.digest]["artifactType"] == "application/vnd.oci.image.config.v1+json"
    assert "OCI-Filters-Applied" not in r.headers

    r = client.get(f"/v2/{repo}/referrers/{subject.digest}", params={"artifactType": SBOM})
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert [d["digest"] for d in r.json()["manifests"]] == [sbom.digest]


def test_deleted_referrer_disappears(client: httpx.Client, repo: str) -> None:
    subject = image()
    push_image(client, repo, subject, tag="v1")
    sbom = image(layers=1, subject=subject, artifact_type=SBOM)
    push_image(client, repo, sbom)
    assert client.delete(f"/v2/{repo}/manifests/{sbom.digest}").status_code == 202
    r = client.get(f"/v2/{repo}/referrers/{subject.digest}")
    assert r.json()["manifests"] == []


def test_index_as_referrer(client: httpx.Client, repo: str) -> None:
    subject = image()
    push_image(client, repo, subject, tag="v1")
    idx = index([image(layers=1)])
    doc = idx.manifest.decode()[:-1] + (
        f', "subject": {{"mediaType": "{subject.media_type}", "digest": "{subject.digest}", '
        f'"size": {len(subject.manifest)}}}, "artifactType": "{SBOM}"}}'
    )
    idx.manifest = doc.encode()
    push_image(client, repo, idx)
    r = client.get(f"/v2/{repo}/referrers/{subject.digest}")
    [entry] = r.json()["manifests"]
    assert entry["mediaType"] == OCI_INDEX
    assert entry["artifactType"] == SBOM


def test_invalid_digest_is_400(client: httpx.Client, repo: str) -> None:
    r = client.get(f"/v2/{repo}/referrers/sha256:nope")
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"


def test_pagination(client: httpx.Client, repo: str, monkeypatch: object) -> None:
    subject = image()
    push_image(client, repo, subject, tag="v1")
    # Many referrers share one layer blob; only the manifests differ.
    base = image(layers=1, subject=subject, artifact_type=SBOM)
    push_image(client, repo, base)
    digests = {base.digest}
    for i in range(24):
        m = base.manifest.replace(
            b'"schemaVersion": 2', b'"schemaVersion": 2, "annotations": {"n": "%d"}' % i
        )
        r = client.put(
            f"/v2/{repo}/manifests/{sha256(m)}",
            content=m,
            headers={"Content-Type": base.media_type},
        )
        assert r.status_code == 201, r.text
        digests.add(sha256(m))
    r = client.get(f"/v2/{repo}/referrers/{subject.digest}")
    assert {d["digest"] for d in r.json()["manifests"]} == digests
