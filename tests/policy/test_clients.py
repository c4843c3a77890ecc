"""What skopeo and podman users see, against a real ``registry serve``: an immutable tag
that would move and a push over a quota fail with the registry's message (the rule,
the usage and the limit), not a bare 403."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import require_tool, start_server
from tests.images import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Image, descriptor, write_oci_layout
from tests.policy.conftest import policy_config
from tests.server import RegistryServer

POLICY = {
    "immutable_tags": [{"name": "releases", "repositories": ["prod/**"], "tags": ["v*"]}],
    "quotas": [{"name": "small", "repositories": ["small/**"], "limit": "256KiB"}],
}


def real_image(size: int) -> Image:
    """An image podman can store: one real tar layer of ``size`` random bytes."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        info = tarfile.TarInfo("data.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    raw = tar_bytes.getvalue()
    layer = gzip.compress(raw, 1)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(raw).hexdigest()}"]},
        }
    ).encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, layer)],
    }
    blobs = {"sha256:" + hashlib.sha256(b).hexdigest(): b for b in (config, layer)}
    return Image(json.dumps(doc).encode(), OCI_MANIFEST, blobs)


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> RegistryServer:
    workdir = tmp_path_factory.mktemp("policy-clients")
    return start_server(request, workdir, config=policy_config(POLICY))


def layout(tmp_path: Path, name: str, size: int = 1000) -> Path:
    path = tmp_path / name
    write_oci_layout(path, real_image(size), "latest")
    return path


def skopeo_copy(tmp_path: Path, source: Path, ref: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        require_tool("skopeo"),
        "--insecure-policy",
        "copy",
        "--dest-tls-verify=false",
        f"oci:{source}:latest",
        f"docker://{ref}",
    ]
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def test_skopeo_sees_why_an_immutable_tag_cannot_move(
    server: RegistryServer, tmp_path: Path
) -> None:
    ref = f"{server.host}/prod/app:v1"
    image_a = layout(tmp_path, "a")
    first = skopeo_copy(tmp_path, image_a, ref)
    assert first.returncode == 0, first.stderr
    again = skopeo_copy(tmp_path, image_a, ref)  # the same image: fine
    assert again.returncode == 0, again.stderr
    moved = skopeo_copy(tmp_path, layout(tmp_path, "b"), ref)
    assert moved.returncode != 0
    assert "denied" in moved.stderr
    assert "prod/app:v1 is immutable by rule 'releases'" in moved.stderr


def test_skopeo_sees_the_quota_usage_and_limit(server: RegistryServer, tmp_path: Path) -> None:
    big = layout(tmp_path, "big", 400 * 1024)
    done = skopeo_copy(tmp_path, big, f"{server.host}/small/app:v1")
    assert done.returncode != 0
    assert "quota 'small'" in done.stderr and "256.0 KiB" in done.stderr, done.stderr


@pytest.fixture
def podman(tmp_path: Path) -> list[str]:
    """podman with every piece of its state in this test's folder."""
    require_tool("podman")
    conf = tmp_path / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "vfs"\nrunroot = "{tmp_path}/run"\ngraphroot = "{tmp_path}/graph"\n'
    )
    return [f"CONTAINERS_STORAGE_CONF={conf}"]


def run_podman(env: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, **dict(e.split("=", 1) for e in env)}
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=180, env=environ
    )


def test_podman_sees_clear_errors(
    server: RegistryServer, tmp_path: Path, podman: list[str]
) -> None:
    for name, size in (("one", 1000), ("two", 1000), ("huge", 400 * 1024)):
        pulled = run_podman(podman, "pull", f"oci:{layout(tmp_path, name, size)}:latest")
        assert pulled.returncode == 0, pulled.stderr
        image_id = pulled.stdout.strip().splitlines()[-1]
        tagged = run_podman(podman, "tag", image_id, f"localhost/{name}:latest")
        assert tagged.returncode == 0, tagged.stderr

    def push(name: str, ref: str) -> subprocess.CompletedProcess[str]:
        return run_podman(
            podman, "push", "--tls-verify=false", f"localhost/{name}:latest", f"docker://{ref}"
        )

    ok = push("one", f"{server.host}/prod/podman:v2")
    assert ok.returncode == 0, ok.stderr
    moved = push("two", f"{server.host}/prod/podman:v2")
    assert moved.returncode != 0
    assert "prod/podman:v2 is immutable by rule 'releases'" in moved.stderr
    full = push("huge", f"{server.host}/small/podman:v1")
    assert full.returncode != 0
    assert "quota 'small'" in full.stderr, full.stderr
