"""The automated-build recipe of docs/events.md, end to end: a registry with a signed
endpoint, examples/rebuild_on_push.py receiving it, and buildah. Pushing a new
``base:latest`` makes the receiver rebuild ``app`` FROM it and push it back within
seconds; the app's config then carries the new base's layer.

No image can be pulled here, so the test makes ``base`` itself (buildah from scratch,
one file) and the app's Containerfile has no RUN: FROM, COPY and LABEL need no
container runtime."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import require_tool, start_server
from tests.server import RegistryServer, free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SECRET = "whsec_" + "YnVpbGQtc2VjcmV0LWJ1aWxkLXNlY3JldC1idWlsZA=="
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


@pytest.fixture
def containers(tmp_path: Path) -> Iterator[dict[str, str]]:
    """buildah's storage and settings in a temp folder (shared/notes/containers-offline)."""
    require_tool("buildah")
    root = tmp_path / "containers"
    root.mkdir()
    (root / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{root}/graph"\nrunroot = "{root}/run"\n'
    )
    (root / "containers.conf").write_text(
        "[containers]\n"
        'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
        '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n'
        f'tmp_dir = "{root}/tmp"\n[network]\nnetwork_config_dir = "{root}/net"\n'
    )
    env = {
        **os.environ,
        "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
        "CONTAINERS_CONF": str(root / "containers.conf"),
    }
    yield env
    subprocess.run(["buildah", "rm", "--all"], env=env, capture_output=True, check=False)
    subprocess.run(
        ["buildah", "rmi", "--all", "--force"], env=env, capture_output=True, check=False
    )
    shutil.rmtree(root, ignore_errors=True)


def buildah(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(["buildah", *args], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def push_base(env: dict[str, str], registry: RegistryServer, content: str, work: Path) -> None:
    """A one-file base image, made from scratch and pushed as base:latest."""
    (work / "base.txt").write_text(content)
    image = f"{registry.host}/base:latest"
    container = buildah(env, "from", "scratch")
    buildah(env, "copy", container, str(work / "base.txt"), "/base.txt")
    buildah(env, "commit", container, image)
    buildah(env, "rm", container)
    buildah(env, "push", "--tls-verify=false", image, f"docker://{image}")


def diff_ids(client: httpx.Client, repository: str) -> list[str] | None:
    r = client.get(f"/v2/{repository}/manifests/latest", headers={"Accept": ACCEPT})
    if r.status_code != 200:
        return None
    config = client.get(f"/v2/{repository}/blobs/{r.json()['config']['digest']}").json()
    ids: list[str] = config["rootfs"]["diff_ids"]
    return ids


def wait_for_app_on(client: httpx.Client, base_layer: str, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        layers = diff_ids(client, "app")
        if layers and layers[0] == base_layer:
            return layers
        time.sleep(0.2)
    raise AssertionError(f"app was not rebuilt on {base_layer} within {timeout}s")


def test_pushing_a_new_base_rebuilds_the_app_within_seconds(
    request: pytest.FixtureRequest, tmp_path: Path, containers: dict[str, str]
) -> None:
    port = free_port()
    config: dict[str, Any] = {
        "notifications": {
            "poll_interval": "200ms",
            "endpoints": [
                {
                    "name": "builds",
                    "url": f"http://127.0.0.1:{port}/",
                    "secrets": [SECRET],
                    "repositories": ["base"],
                    "ignore": {"actions": ["pull", "mount", "delete", "create"]},
                }
            ],
        }
    }
    registry = start_server(request, tmp_path / "registry", config=config)
    receiver_log = (tmp_path / "receiver.log").open("wb")
    receiver = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "rebuild_on_push.py"),
            "--registry",
            registry.host,
            "--watch",
            "base:latest",
            "--context",
            str(EXAMPLES / "app"),
            "--image",
            "app:latest",
            "--port",
            str(port),
        ],
        env={**containers, "WEBHOOK_SECRET": SECRET},
        stdout=receiver_log,
        stderr=subprocess.STDOUT,
    )

    def stop_receiver() -> None:
        receiver.terminate()
        receiver.wait(10)
        receiver_log.close()

    request.addfinalizer(stop_receiver)
    with registry.client() as client:
        for generation in ("one", "two"):
            started = time.monotonic()
            push_base(containers, registry, f"base, generation {generation}\n", tmp_path)
            base = diff_ids(client, "base")
            assert base is not None and len(base) == 1
            app = wait_for_app_on(client, base[0], timeout=60)
            took = time.monotonic() - started
            assert len(app) == 2  # the new base's layer, then the app's COPY
            assert took < 30, f"rebuilt after {took:.1f}s"
    log = (tmp_path / "receiver.log").read_text()
    assert log.count("pushed ") >= 2, log
