"""GET /v2/<name>/tags/list: lexical order, n/last pagination, Link."""

from __future__ import annotations

import httpx

from tests.images import OCI_MANIFEST, image, push_blob


def push_tags(client: httpx.Client, repo: str, tags: list[str]) -> None:
    img = image(layers=1)
    for data in img.blobs.values():
        push_blob(client, repo, data)
    query = "&".join(f"tag={t}" for t in tags)
    r = client.put(
        f"/v2/{repo}/manifests/{img.digest}?{query}",
        content=img.manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 201


TAGS = ["v1", "V2", "latest", "a_b", "1.0", "z-9", "Zeta", "v10"]


def test_tags_are_listed_in_lexical_order(client: httpx.Client, repo: str) -> None:
    push_tags(client, repo, TAGS)
    r = client.get(f"/v2/{repo}/tags/list")
    assert r.status_code == 200
    assert r.json() == {"name": repo, "tags": sorted(TAGS)}
    assert "Link" not in r.headers


def test_pagination_with_link(client: httpx.Client, repo: str) -> None:
    push_tags(client, repo, TAGS)
    seen: list[str] = []
    url = f"/v2/{repo}/tags/list?n=3"
    while url:
        r = client.get(url)
        assert r.status_code == 200
        page = r.json()["tags"]
        assert len(page) <= 3
        seen += page
        link = r.headers.get("Link")
        if link:
            assert link.endswith('; rel="next"')
            url = link[link.index("<") + 1 : link.index(">")]
        else:
            url = ""
    assert seen == sorted(TAGS)


def test_last_is_exclusive(client: httpx.Client, repo: str) -> None:
    push_tags(client, repo, TAGS)
    r = client.get(f"/v2/{repo}/tags/list", params={"last": "latest", "n": 2})
    expected = [t for t in sorted(TAGS) if t > "latest"][:2]
    assert r.json()["tags"] == expected


def test_n_zero_is_empty(client: httpx.Client, repo: str) -> None:
    push_tags(client, repo, TAGS)
    r = client.get(f"/v2/{repo}/tags/list", params={"n": 0})
    assert r.status_code == 200
    assert r.json()["tags"] == []


def test_invalid_n_is_400(client: httpx.Client, repo: str) -> None:
    push_tags(client, repo, ["a"])
    for n in ("-1", "abc"):
        r = client.get(f"/v2/{repo}/tags/list", params={"n": n})
        assert r.status_code == 400
        assert r.json()["errors"][0]["code"] == "PAGINATION_NUMBER_INVALID"


def test_unknown_repository_is_404(client: httpx.Client, repo: str) -> None:
    r = client.get(f"/v2/{repo}/tags/list")
    assert r.status_code == 404
    assert r.json()["errors"][0]["code"] == "NAME_UNKNOWN"
