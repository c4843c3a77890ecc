"""The real container image: built from the Dockerfile with podman on a stand-in base
(tests/ops/containers.py), run with host networking, pushed to and pulled from with
skopeo and with the docker CLI (through ``podman system service``)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import require_tool
from tests.images import image, write_oci_layout
from tests.ops.containers import Podman, allow_insecure, wait_http
from tests.server import free_port

pytestmark = [pytest.mark.container, pytest.mark.timeout(600)]


@dataclass
class Running:
    name: str
    port: int

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"


def run_container(podman: Podman, image_name: str, *env: str) -> Running:
    port = free_port()
    name = podman.new_name()
    flags = [arg for e in (f"REGISTRY_HTTP_PORT={port}", *env) for arg in ("--env", e)]
    podman.run("run", "--detach", "--name", name, "--network", "host", *flags, image_name)
    return Running(name, port)


@pytest.fixture(scope="module")
def container(podman: Podman, registry_image: str) -> Iterator[Running]:
    # A zero TTL: the read-only switch test sees the flag at once.
    running = run_container(podman, registry_image, "REGISTRY_STORAGE_READONLY_FLAG_TTL=0")
    try:
        wait_http(f"{running.url}/health/ready")
    except AssertionError:
        raise AssertionError(podman.run("logs", running.name, check=False).stdout) from None
    yield running
    podman.remove_container(running.name)


def test_image_runs_as_non_root_with_volume_port_and_healthcheck(
    podman: Podman, registry_image: str, container: Running
) -> None:
    config = json.loads(podman.run("image", "inspect", registry_image).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    assert "5000/tcp" in config["ExposedPorts"]
    assert "/var/lib/registry" in config["Volumes"]
    healthcheck = podman.run(
        "image", "inspect", "--format", "{{json .Config.Healthcheck}}", registry_image
    ).stdout
    assert json.loads(healthcheck)["Test"] == ["CMD", "registry", "healthcheck"]
    assert podman.run("exec", container.name, "id", "-u").stdout.strip() == "10001"
    # The volume is writable by that user: the server keeps its files there.
    assert ".tmp" in podman.run("exec", container.name, "ls", "-a", "/var/lib/registry").stdout


def test_skopeo_pushes_and_pulls_through_the_container(container: Running, tmp_path: Path) -> None:
    skopeo = require_tool("skopeo")
    img = image(layers=2, layer_size=300_000)
    write_oci_layout(tmp_path / "src", img, "v1")
    dest = f"docker://{container.host}/image/skopeo:v1"
    subprocess.run(
        [skopeo, "copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'src'}:v1", dest],
        check=True,
        capture_output=True,
        timeout=120,
    )
    raw = subprocess.run(
        [skopeo, "inspect", "--raw", "--tls-verify=false", dest],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    assert raw == img.manifest
    subprocess.run(
        [skopeo, "copy", "--src-tls-verify=false", dest, f"oci:{tmp_path / 'back'}:v1"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    for digest, data in img.blobs.items():
        assert (tmp_path / "back/blobs/sha256" / digest.split(":")[1]).read_bytes() == data


def test_healthcheck_run_is_healthy_and_fails_when_storage_is_down(
    podman: Podman, registry_image: str, container: Running
) -> None:
    ok = podman.run("healthcheck", "run", container.name, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # The same image with an S3 backend nobody answers for: readiness, and so the
    # healthcheck, must fail.
    broken = run_container(
        podman,
        registry_image,
        "REGISTRY_STORAGE_DRIVER=s3",
        "REGISTRY_STORAGE_S3_BUCKET=nowhere",
        f"REGISTRY_STORAGE_S3_ENDPOINT_URL=http://127.0.0.1:{free_port()}",
        "REGISTRY_STORAGE_S3_ACCESS_KEY_ID=x",
        "REGISTRY_STORAGE_S3_SECRET_ACCESS_KEY=y",
        "REGISTRY_HEALTH_STORAGE_TIMEOUT=1s",
    )
    wait_http(f"{broken.url}/health/live")
    bad = podman.run("healthcheck", "run", broken.name, check=False)
    assert bad.returncode != 0, bad.stdout + bad.stderr
    podman.remove_container(broken.name)


def test_readonly_switch_inside_the_container(podman: Podman, container: Running) -> None:
    with httpx.Client(base_url=container.url, timeout=30) as client:
        podman.run("exec", container.name, "registry", "readonly", "on", "--reason", "disk swap")
        try:
            r = client.post("/v2/image/readonly/blobs/uploads/")
            assert r.status_code == 503
            assert r.json()["errors"][0]["code"] == "UNAVAILABLE"
            assert "disk swap" in r.json()["errors"][0]["message"]
            assert client.get("/v2/").status_code == 200
        finally:
            podman.run("exec", container.name, "registry", "readonly", "off")
        assert client.post("/v2/image/readonly/blobs/uploads/").status_code == 202


def test_sigterm_stops_the_container_gracefully(podman: Podman, registry_image: str) -> None:
    running = run_container(podman, registry_image)
    wait_http(f"{running.url}/health/live")
    started = time.monotonic()
    podman.run("stop", "--time", "20", running.name)
    assert time.monotonic() - started < 10
    state = json.loads(podman.run("inspect", running.name).stdout)[0]["State"]
    assert state["ExitCode"] == 0
    assert "Application shutdown complete" in podman.run("logs", running.name).stdout + (
        podman.run("logs", running.name).stderr
    )
    podman.remove_container(running.name)


def test_docker_cli_pushes_and_pulls_through_podman_service(
    podman: Podman, container: Running, tmp_path: Path
) -> None:
    """The real docker client, with podman's Docker-compatible API as its engine."""
    docker = require_tool("docker")
    allow_insecure(podman, container.host)  # the engine, like dockerd, needs to be told
    sock = tmp_path / "podman.sock"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{sock}"],
        env=podman.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {**podman.env, "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(tmp_path)}

    def docker_cli(*args: str) -> str:
        result = subprocess.run(
            [docker, *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"docker {args}: {result.stdout}\n{result.stderr}"
        return result.stdout

    try:
        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        rootfs = tmp_path / "rootfs"
        rootfs.mkdir()
        (rootfs / "hello.txt").write_text("pushed by the docker CLI\n")
        local = f"localhost/{podman.new_name()}:1"
        remote = f"{container.host}/docker/cli:v1"
        podman.images += [local, remote]
        tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], capture_output=True, check=True)
        podman.run("import", "-", local, input=tar.stdout)
        image_id = docker_cli("image", "inspect", "--format", "{{.Id}}", local).strip()
        docker_cli("tag", local, remote)
        docker_cli("push", remote)
        docker_cli("rmi", remote, local)
        assert docker_cli("images", "--quiet", "--filter", f"reference={remote}").strip() == ""
        docker_cli("pull", remote)
        assert docker_cli("image", "inspect", "--format", "{{.Id}}", remote).strip() == image_id
    finally:
        service.terminate()
        service.wait(30)
    r = httpx.get(f"{container.url}/v2/docker/cli/tags/list", timeout=10)
    assert r.json()["tags"] == ["v1"]
