"""``GET /api/usage``, ``registry usage`` and the quota metrics: the same figures, each
caller seeing what it may see."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from registry.store import RepositoryUsage, UsageSnapshot
from storage_backends.filesystem import FilesystemDriver
from tests.asgi_registry import InProcessRegistry
from tests.images import image, push_image
from tests.policy.conftest import Factory, namespace, policy_config, store_of

PASSWORD = "pw-for-usage"
POLICY = {
    "quotas": [
        {"name": "team-a", "repositories": ["team-a/**"], "limit": "10MiB"},
        {"name": "team-b", "repositories": ["team-b/**"], "limit": "10MiB"},
    ]
}


def basic_auth() -> dict[str, Any]:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    return {
        "mode": "basic",
        "users": {name: {"password_hash": hashed} for name in ("admin", "alice", "nobody")},
        "grants": [
            {"repositories": ["**"], "role": "admin", "users": ["admin"]},
            {"repositories": ["team-a/**"], "role": "writer", "users": ["alice"]},
        ],
    }


def test_admins_see_everything_and_others_their_namespaces(make_registry: Factory) -> None:
    registry = make_registry(policy_config(POLICY, auth=basic_auth()))
    admin = registry.client(auth=("admin", PASSWORD))
    for repo in ("team-a/app", "team-b/app", "other/app"):
        push_image(admin, repo, image(layers=1, layer_size=2000), "v1")
    store = store_of(registry)
    registry.run(
        store.usage.write(
            UsageSnapshot(
                finished_at=store.clock.time(),
                total_bytes=123_456,
                repositories=(RepositoryUsage("other/app", 4321, 4000, 1, 1),),
            )
        )
    )
    everything = admin.get("/api/usage").json()
    assert [n["name"] for n in everything["namespaces"]] == ["team-a", "team-b"]
    assert [r["name"] for r in everything["repositories"]] == [
        "other/app",
        "team-a/app",
        "team-b/app",
    ]
    assert everything["total_bytes"] == 123_456
    other = everything["repositories"][0]
    assert other["source"] == "collection" and other["held_bytes"] == 4321
    assert other["unique_bytes"] == 4000 and other["tags"] == 1

    alice = registry.client(auth=("alice", PASSWORD)).get("/api/usage").json()
    assert [n["name"] for n in alice["namespaces"]] == ["team-a"]
    assert [r["name"] for r in alice["repositories"]] == ["team-a/app"]
    assert alice["total_bytes"] is None  # the registry's totals are for admins

    nobody = registry.client(auth=("nobody", PASSWORD)).get("/api/usage").json()
    assert nobody["namespaces"] == [] and nobody["repositories"] == []
    assert registry.client().get("/api/usage").status_code == 401


def test_one_namespace_by_name_or_by_repository_prefix(make_registry: Factory) -> None:
    registry = make_registry(policy_config(POLICY))
    client = registry.client()
    for repo in ("team-a/app", "team-a/web", "team-b/app"):
        push_image(client, repo, image(layers=1), "v1")
    by_quota = client.get("/api/usage", params={"namespace": "team-b"}).json()
    assert [n["name"] for n in by_quota["namespaces"]] == ["team-b"]
    assert [r["name"] for r in by_quota["repositories"]] == ["team-b/app"]
    by_prefix = client.get("/api/usage", params={"namespace": "team-a/web"}).json()
    assert [r["name"] for r in by_prefix["repositories"]] == ["team-a/web"]


def test_metrics_show_each_quota(make_registry: Factory) -> None:
    registry = make_registry(policy_config(POLICY))
    client = registry.client()
    push_image(client, "team-a/app", image(layers=1, layer_size=3000), "v1")
    governance = registry.app.state.policy
    registry.run(governance.compactor.upkeep())
    used = namespace(client, "team-a")["used_bytes"]
    text = client.get("/metrics").text
    assert f'registry_quota_used_bytes{{quota="team-a"}} {float(used)}' in text
    assert 'registry_quota_limit_bytes{quota="team-a"} 1.048576e+07' in text
    assert 'registry_quota_use_ratio{quota="team-a"}' in text


def test_registry_usage_prints_what_the_api_gives(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    config = policy_config(POLICY, storage={"filesystem": {"rootdirectory": str(data)}})
    with InProcessRegistry(config, FilesystemDriver(str(data))) as registry:
        client = registry.client()
        push_image(client, "team-a/app", image(layers=2, layer_size=5000), "v1")
        push_image(client, "team-b/app", image(layers=1, layer_size=5000), "v1")
        api = client.get("/api/usage").json()
    config_file = tmp_path / "config.yml"
    config_file.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}

    def usage(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "registry", "usage", "--config", str(config_file), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)

    done = usage("--json")
    assert done.returncode == 0, done.stderr
    cli = json.loads(done.stdout)
    for field in ("namespaces", "repositories"):
        assert cli[field] == api[field]
    table = usage("team-a")
    assert table.returncode == 0, table.stderr
    assert "team-a" in table.stdout and "team-a/app" in table.stdout
    assert "team-b/app" not in table.stdout
    assert "USED" in table.stdout and "RELEASABLE" in table.stdout
