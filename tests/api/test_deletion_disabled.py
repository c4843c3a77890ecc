"""storage.delete.enabled=false: every DELETE of content answers 405 UNSUPPORTED."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import start_server
from tests.images import image, push_image


def test_deletes_are_unsupported(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    server = start_server(request, tmp_path, env={"REGISTRY_STORAGE_DELETE_ENABLED": "false"})
    with server.client() as client:
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
