"""Podman for the image tests, as checked in shared/notes/containers-offline.md.

No Docker engine and no base-image registry are reachable here, so:

* every piece of podman's state lives in one temporary folder, chosen by two small config
  files (``CONTAINERS_STORAGE_CONF``, ``CONTAINERS_CONF``) in the environment of each call;
* a stand-in ``python:3.11-slim`` is made once per session with debootstrap (Debian's
  Python 3.11, so the Dockerfile must not rely on anything only the official image has);
* ``pip`` inside the build reaches PyPI through this machine's TLS interception: the
  host's CA bundle is mounted read-only over the build container's, with a pip config
  that names it. Nothing of that ends up in the image.

Everything this module creates is removed by name when the session ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import require_tool

APT_PACKAGES = "podman buildah runc debootstrap skopeo"
BASE_IMAGE = "docker.io/library/python:3.11-slim"
IMAGE = "localhost/registry-under-test:latest"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
REPO_ROOT = Path(__file__).resolve().parents[2]
NAME_PREFIX = "registry-test-"


@dataclass
class Podman:
    """podman with its state in ``root``; remembers what it made, to remove it."""

    root: Path
    env: dict[str, str]
    containers: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)

    def run(
        self, *args: str, check: bool = True, timeout: float = 120.0, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["podman", *args],
            env=self.env,
            input=input.decode() if input is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def new_name(self) -> str:
        name = f"{NAME_PREFIX}{uuid.uuid4().hex[:8]}"
        self.containers.append(name)
        return name

    def remove_container(self, name: str) -> None:
        self.run("rm", "--force", "--volumes", "--time", "5", name, check=False, timeout=60)

    def cleanup(self) -> None:
        for name in self.containers:
            self.remove_container(name)
        for image in reversed(self.images):
            self.run("rmi", "--force", image, check=False, timeout=60)


def podman_env(root: Path) -> dict[str, str]:
    """The environment that points podman (and the tools it runs) into ``root``."""
    for sub in ("graph", "run", "tmp", "networks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    storage = root / "storage.conf"
    storage.write_text(
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{root / "graph"}"\n'
        f'runroot = "{root / "run"}"\n'
    )
    containers = root / "containers.conf"
    containers.write_text(
        "[containers]\n"
        # root here cannot raise its limits: podman's defaults fail in setrlimit.
        'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
        "[engine]\n"
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        'runtime = "runc"\n'
        f'tmp_dir = "{root / "tmp"}"\n'
        "[network]\n"
        f'network_config_dir = "{root / "networks"}"\n'
    )
    registries = root / "registries.conf"
    registries.write_text('unqualified-search-registries = ["docker.io"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env.update(
        CONTAINERS_STORAGE_CONF=str(storage),
        CONTAINERS_CONF=str(containers),
        CONTAINERS_REGISTRIES_CONF=str(registries),
        TMPDIR=str(root / "tmp"),
    )
    return env


def allow_insecure(podman: Podman, host: str) -> None:
    """Let podman (and a docker client through its API) talk plain HTTP to ``host``."""
    conf = podman.root / "registries.conf"
    conf.write_text(conf.read_text() + f'\n[[registry]]\nlocation = "{host}"\ninsecure = true\n')


def make_stand_in_base(podman: Podman, workdir: Path) -> None:
    """debootstrap a minimal Debian with Python 3.11 and import it as python:3.11-slim."""
    require_tool("debootstrap")
    rootfs = workdir / "rootfs"
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,python3-pip,ca-certificates",
            "bookworm",
            str(rootfs),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    for name, target in (("python", "/usr/bin/python3"), ("pip", "/usr/bin/pip3")):
        link = rootfs / "usr/local/bin" / name
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        shutil.rmtree(rootfs / junk, ignore_errors=True)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(
        ["podman", "import", "-", BASE_IMAGE],
        stdin=tar.stdout,
        env=podman.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    tar.wait()
    assert imported.returncode == 0, imported.stderr
    podman.images.append(BASE_IMAGE)
    shutil.rmtree(rootfs)


def build_image(podman: Podman, tag: str, workdir: Path) -> None:
    """``podman build`` of the project's Dockerfile, offline but for PyPI."""
    pip_conf = workdir / "pip.conf"
    pip_conf.write_text(f"[global]\ncert = {HOST_CA_BUNDLE}\n")
    podman.images.append(tag)
    podman.run(
        "build",
        "--format",
        "docker",
        "--pull=never",
        "--network",
        "host",
        "--volume",
        f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro",
        "--volume",
        f"{pip_conf}:/etc/pip.conf:ro",
        "--tag",
        tag,
        "--file",
        str(REPO_ROOT / "Dockerfile"),
        str(REPO_ROOT),
        timeout=600,
    )


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer 200 within {timeout}s")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def podman() -> Iterator[Podman]:
    """podman with its storage in a folder of its own, for the session."""
    for tool in ("podman", "runc", "skopeo"):
        require_tool(tool)
    root = Path(tempfile.mkdtemp(prefix="registry-podman-"))
    p = Podman(root, podman_env(root))
    try:
        yield p
    finally:
        p.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def registry_image(podman: Podman) -> str:
    """The project's image, built once per session on the stand-in base."""
    workdir = podman.root / "build"
    workdir.mkdir()
    make_stand_in_base(podman, workdir)
    build_image(podman, IMAGE, workdir)
    return IMAGE
