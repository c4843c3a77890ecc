"""GET /v2/_catalog: lexical order (prefixes first), n/last pagination, Link."""

from __future__ import annotations

from collections.abc import Callable

from tests.asgi_registry import InProcessRegistry
from tests.images import push_blob

NAMES = ["b", "a", "a/b", "a-b", "a/b/c", "a.b", "z/z", "a_b", "a__b"]


def test_catalog_lists_repositories_in_order(
    make_registry: Callable[..., InProcessRegistry],
) -> None:
    with make_registry().client() as client:
        for name in NAMES:
            push_blob(client, name, name.encode())
        r = client.get("/v2/_catalog")
        assert r.status_code == 200
        assert r.json() == {"repositories": sorted(NAMES)}
        seen: list[str] = []
        url = "/v2/_catalog?n=2"
        while url:
            r = client.get(url)
            seen += r.json()["repositories"]
            link = r.headers.get("Link", "")
            url = link[link.index("<") + 1 : link.index(">")] if link else ""
        assert seen == sorted(NAMES)
        r = client.get("/v2/_catalog", params={"n": 2, "last": "a-b"})
        assert r.json()["repositories"] == [n for n in sorted(NAMES) if n > "a-b"][:2]
        assert client.get("/v2/_catalog", params={"n": 0}).json() == {"repositories": []}
        assert client.get("/v2/_catalog", params={"n": "x"}).status_code == 400
