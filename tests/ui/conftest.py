"""Fixtures of the web UI's tests: a registry in this process with the auth tests'
users and roles (tests/auth/conftest.py), seeded through the API, and a ``Visitor``
that browses it as a browser without JavaScript would (cookies kept, forms posted)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import images
from tests.asgi_registry import InProcessRegistry
from tests.auth.conftest import PASSWORD, auth_section, get_token
from tests.ui.browser import playwright_browser, seeded

__all__ = ["playwright_browser", "seeded"]  # fixtures of the browser tests

# One repository per kind of grant in the shared policy, plus one nobody is granted.
REPOSITORIES = ("team-a/app", "team-b/app", "shared/app", "public/app", "other/app")
USERS = ("admin", "alice", "bob", "carol", "dave", "erin", None)  # None: anonymous
_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


class Visitor:
    """A browser without JavaScript."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(url, **kwargs)

    def csrf(self, url: str = "/ui/login") -> str:
        """The CSRF token of this visitor's session, as a form on ``url`` carries it."""
        found = _CSRF.search(self.get(url).text)
        assert found, f"no form on {url}"
        return found.group(1)

    def post(self, url: str, fields: dict[str, str], **kwargs: Any) -> httpx.Response:
        return self.http.post(url, data=fields, **kwargs)

    def login(self, user: str, password: str = PASSWORD) -> httpx.Response:
        token = self.csrf("/ui/login")
        return self.post(
            "/ui/login", {"csrf": token, "username": user, "password": password, "next": "/ui/"}
        )


def auth_config(workdir: Path, mode: str = "token", **ui: Any) -> dict[str, Any]:
    extra = {"token": {"key_file": str(workdir / "token.pem")}} if mode == "token" else {}
    return {"auth": auth_section(workdir, mode, **extra), "ui": ui}


def admin_client(registry: InProcessRegistry, names: tuple[str, ...]) -> httpx.Client:
    """An API client that may do everything on ``names`` (token mode)."""
    scopes = [f"repository:{n}:pull,push,delete" for n in names]
    with registry.client() as issuer:
        token = get_token(issuer, *scopes, user="admin")
    return registry.client(headers={"Authorization": f"Bearer {token}"})


def seed(client: httpx.Client, name: str) -> images.Image:
    """An image tagged v1 and v2 (one manifest) in ``name``."""
    img = images.image(layers=1, layer_size=256)
    images.push_image(client, name, img, tag="v1")
    r = client.put(
        f"/v2/{name}/manifests/v2", content=img.manifest, headers={"Content-Type": img.media_type}
    )
    assert r.status_code == 201, r.text
    return img


@pytest.fixture(scope="module")
def policy_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessRegistry]:
    """Token mode with the shared policy; REPOSITORIES each hold v1 and v2."""
    workdir = tmp_path_factory.mktemp("ui-policy")
    with InProcessRegistry(auth_config(workdir)) as registry:
        with admin_client(registry, REPOSITORIES) as api:
            for name in REPOSITORIES:
                seed(api, name)
        yield registry


def visitor_of(registry: InProcessRegistry, user: str | None) -> Visitor:
    visitor = Visitor(registry.client())
    if user is not None:
        r = visitor.login(user)
        assert r.status_code == 303, r.text
    return visitor
