"""The complete example of docs/auth.md runs as written."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from registry.cli import main
from tests.auth.conftest import bearer
from tests.images import image, push_image
from tests.server import RegistryServer

DOC = Path(__file__).resolve().parents[2] / "docs" / "auth.md"


def example() -> dict[str, Any]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.DOTALL)
    (block,) = [b for b in blocks if b.startswith("# docs/auth.md example")]
    loaded: dict[str, Any] = yaml.safe_load(block)
    return loaded


def token(c: httpx.Client, scope: str, user: str | None = None, password: str = "") -> str:
    r = c.get(
        "/auth/token",
        params={"service": "registry.example.com", "scope": scope},
        auth=(user, password) if user else None,
    )
    assert r.status_code == 200, r.text
    value: str = r.json()["token"]
    return value


def test_the_documented_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = example()
    monkeypatch.chdir(tmp_path)  # the example's relative paths
    for user in ("admin", "alice", "bob"):
        monkeypatch.setattr("sys.stdin", io.StringIO(f"{user}-pw\n"))
        main(["user", "add", user, "--file", "htpasswd", "--password-stdin", "--rounds", "4"])
    server = RegistryServer(tmp_path, config)
    server.start()
    try:
        with server.client() as c:
            assert (tmp_path / "token-signing-key.pem").exists()
            challenge = c.get("/v2/").headers["www-authenticate"]
            assert challenge == (
                f'Bearer realm="{server.url}/auth/token",service="registry.example.com"'
            )
            alice = token(c, "repository:team-a/app:pull,push", "alice", "alice-pw")
            with server.client(headers=bearer(alice)) as pusher:
                push_image(pusher, "team-a/app", image(layers=1, layer_size=64), tag="v1")
            bob = token(c, "repository:team-a/app:pull,push", "bob", "bob-pw")
            assert c.get("/v2/team-a/app/manifests/v1", headers=bearer(bob)).status_code == 200
            assert c.post("/v2/team-a/app/blobs/uploads/", headers=bearer(bob)).status_code == 403
            admin = token(c, "repository:public/tool:pull,push", "admin", "admin-pw")
            with server.client(headers=bearer(admin)) as pusher:
                push_image(pusher, "public/tool", image(layers=1, layer_size=64), tag="v1")
            anonymous = token(c, "repository:public/tool:pull")
            assert (
                c.get("/v2/public/tool/manifests/v1", headers=bearer(anonymous)).status_code == 200
            )
    finally:
        server.stop()
