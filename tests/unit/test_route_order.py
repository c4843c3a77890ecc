"""Which route serves a request does not depend on the order the routes are tried in
beyond what is written here: repository names may hold "blobs", "uploads",
"manifests" or "tags", and every request still reaches the endpoint its last path
segments name. (The hot routes are tried first: a match costs a regular expression per
route tried before it.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.routing import Match

from registry.app import create_app
from registry.config import load_config
from registry.ui import load_ui

DIGEST = "sha256:" + "a" * 64
CASES = [
    ("GET", "/v2/", "/v2/"),
    ("GET", "/v2/_catalog", "/v2/_catalog"),
    ("GET", "/v2/a/manifests/latest", "/v2/{name:path}/manifests/{reference}"),
    ("PUT", "/v2/a/blobs/manifests/v1", "/v2/{name:path}/manifests/{reference}"),
    ("GET", "/v2/blobs/uploads/manifests/v1", "/v2/{name:path}/manifests/{reference}"),
    ("GET", f"/v2/a/manifests/blobs/{DIGEST}", "/v2/{name:path}/blobs/{digest}"),
    ("HEAD", f"/v2/uploads/blobs/{DIGEST}", "/v2/{name:path}/blobs/{digest}"),
    ("DELETE", f"/v2/a/blobs/{DIGEST}", "/v2/{name:path}/blobs/{digest}"),
    ("POST", "/v2/a/blobs/uploads/", "/v2/{name:path}/blobs/uploads/"),
    ("POST", "/v2/a/blobs/uploads", "/v2/{name:path}/blobs/uploads"),
    ("POST", "/v2/manifests/blobs/uploads/", "/v2/{name:path}/blobs/uploads/"),
    ("PATCH", "/v2/a/blobs/uploads/abc", "/v2/{name:path}/blobs/uploads/{upload_id}"),
    ("PUT", "/v2/a/blobs/blobs/uploads/abc", "/v2/{name:path}/blobs/uploads/{upload_id}"),
    ("GET", "/v2/a/blobs/uploads/abc", "/v2/{name:path}/blobs/uploads/{upload_id}"),
    ("DELETE", "/v2/a/blobs/uploads/abc", "/v2/{name:path}/blobs/uploads/{upload_id}"),
    ("GET", "/v2/a/blobs/uploads", "/v2/{name:path}/blobs/{digest}"),  # a bad digest: 400
    ("GET", "/v2/a/manifests/tags/list", "/v2/{name:path}/tags/list"),
    ("GET", f"/v2/a/referrers/{DIGEST}", "/v2/{name:path}/referrers/{digest:path}"),
    ("GET", "/health/live", "/health/live"),
]


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> list[object]:
    data = tmp_path_factory.mktemp("data")
    config = load_config(None, environ={"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(data)})
    return list(create_app(config).router.routes)


def served_by(routes: list[object], method: str, path: str) -> str | None:
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    partial = None
    for route in routes:
        match, _ = route.matches(scope)  # type: ignore[attr-defined]
        if match is Match.FULL:
            return str(route.path)  # type: ignore[attr-defined]
        if match is Match.PARTIAL and partial is None:
            partial = str(route.path)  # type: ignore[attr-defined]
    return partial


@pytest.mark.parametrize(("method", "path", "template"), CASES)
def test_each_request_reaches_the_route_its_path_names(
    routes: list[object], method: str, path: str, template: str
) -> None:
    assert served_by(routes, method, path) == template


def test_the_routes_are_plain_ones_of_the_app(tmp_path: Path) -> None:
    """No included router in between: FastAPI matches an included router's routes
    twice per request. Only the web UI's router (its forms are FastAPI's) is included,
    after every route of the API, so no API request reaches it."""
    config = load_config(None, environ={"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(tmp_path)})
    app = create_app(config)
    load_ui(app)  # as after its first page
    kinds = [type(r).__name__ for r in app.router.routes]
    plain = kinds.index("_IncludedRouter") if "_IncludedRouter" in kinds else len(kinds)
    assert set(kinds[:plain]) == {"Route"} and len(kinds) - plain <= 1
