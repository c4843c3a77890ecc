"""storage.delete.enabled=false: every DELETE of content answers 405 UNSUPPORTED."""

from __future__ import annotations

from collections.abc import Callable

from tests.asgi_registry import InProcessRegistry
from tests.images import image, push_image


def test_deletes_are_unsupported(make_registry: Callable[..., InProcessRegistry]) -> None:
    registry = make_registry({"storage": {"delete": {"enabled": False}}})
    with registry.client() as client:
        img = image()
        digest = push_image(client, "app", img, tag="v1")
        blob = next(iter(img.blobs))
        for path in (
            "/v2/app/manifests/v1",
            f"/v2/app/manifests/{digest}",
            f"/v2/app/blobs/{blob}",
        ):
            r = client.delete(path)
            assert r.status_code == 405, path
            assert r.json()["errors"][0]["code"] == "UNSUPPORTED"
        assert client.get("/v2/app/manifests/v1").status_code == 200
        assert client.head(f"/v2/app/blobs/{blob}").status_code == 200
