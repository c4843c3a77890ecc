"""Real clients pulling through the cache from both upstreams: skopeo by prefix, podman
with the registries.conf of docs/proxy.md, containerd (a private daemon) with the
hosts.toml of docs/proxy.md, which sends ``ns``. Every upstream request must come from
the cache, and the bytes must be the upstream's."""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import require_tool
from tests.images import image, index, write_oci_layout
from tests.proxy.conftest import Upstreams, repo_name, tar_image
from tests.server import RegistryServer

DOCS = Path(__file__).resolve().parents[2] / "docs" / "proxy.md"
CACHE_AGENT = "registry-remote/"


def doc_block(first_line: str) -> str:
    """The fenced block of docs/proxy.md that starts with ``first_line``."""
    for block in re.findall(r"```\w*\n(.*?)```", DOCS.read_text(), re.S):
        if block.startswith(first_line + "\n"):
            return str(block)
    raise AssertionError(f"docs/proxy.md has no block starting {first_line!r}")


def run(*cmd: str, env: dict[str, str] | None = None, timeout: float = 180) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def same_blobs(a: Path, b: Path) -> None:
    files = sorted(p.relative_to(a) for p in (a / "blobs").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in (b / "blobs").rglob("*") if p.is_file())
    for rel in files:
        assert filecmp.cmp(a / rel, b / rel, shallow=False), rel


def only_the_cache_asked(upstreams: Upstreams, which: str) -> None:
    seen = upstreams.front(which).seen
    assert seen, "nothing reached the upstream"
    agents = {s.headers.get("user-agent", "") for s in seen}
    assert all(a.startswith(CACHE_AGENT) for a in agents), agents


@pytest.mark.parametrize("which", ["reg", "dist"])
def test_skopeo_pulls_by_prefix_and_the_second_pull_is_served_from_the_cache(
    cache: RegistryServer, upstreams: Upstreams, tmp_path: Path, which: str
) -> None:
    img = index([image(layers=2, layer_size=100_000), image(layers=1, layer_size=100_000)])
    repo = repo_name()
    upstreams.seed(which, repo, img)
    src = tmp_path / "src"
    write_oci_layout(src, img)
    skopeo = [require_tool("skopeo"), "--insecure-policy", "copy", "--all"]
    ref = f"docker://{cache.host}/{which}/{repo}:v1"
    run(*skopeo, "--src-tls-verify=false", ref, f"oci:{tmp_path / 'first'}:latest")
    same_blobs(src, tmp_path / "first")
    only_the_cache_asked(upstreams, which)
    front = upstreams.front(which)
    front.clear()
    run(*skopeo, "--src-tls-verify=false", ref, f"oci:{tmp_path / 'second'}:latest")
    same_blobs(src, tmp_path / "second")
    assert front.count(None, r"/(blobs|manifests)/") == 0  # within the TTL: no request


@pytest.mark.parametrize("which", ["reg", "dist"])
def test_podman_pulls_through_the_documented_mirror_configuration(
    cache: RegistryServer, upstreams: Upstreams, tmp_path: Path, which: str
) -> None:
    podman = require_tool("podman")
    img = tar_image()
    repo = repo_name()
    upstreams.seed(which, repo, img)
    upstream_host = upstreams.front(which).host
    conf = (
        doc_block("# /etc/containers/registries.conf.d/mirror.conf")
        .replace('"docker.io"', f'"{upstream_host}"')
        .replace('"registry-1.docker.io"', f'"{upstream_host}"')
        .replace("cache.example.com:5000/dockerhub", f"{cache.host}/{which}")
    )
    (tmp_path / "registries.conf").write_text(conf)
    (tmp_path / "auth.json").write_text("{}")  # no credentials from the machine
    env = {
        **os.environ,
        "CONTAINERS_REGISTRIES_CONF": str(tmp_path / "registries.conf"),
        "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json"),
    }
    state = Path(tempfile.mkdtemp(prefix="pxp-", dir="/tmp"))  # podman: a short runroot
    storage = [
        "--root", str(state / "root"),
        "--runroot", str(state / "run"),
        "--storage-driver", "vfs",
        "--events-backend", "none",
    ]  # fmt: skip
    try:
        run(podman, *storage, "pull", "--quiet", f"{upstream_host}/{repo}:v1", env=env)
        inspected = run(podman, *storage, "image", "inspect", f"{upstream_host}/{repo}:v1", env=env)
        assert img.digest in inspected
        only_the_cache_asked(upstreams, which)
        assert upstreams.front(which).count("GET", "/blobs/") == len(img.blobs)
    finally:
        subprocess.run([podman, *storage, "rmi", "--all", "--force"], env=env, capture_output=True)
        shutil.rmtree(state, ignore_errors=True)


# ---------------------------------------------------------------------- containerd


class Containerd:
    """A private containerd: its own root, state and socket under ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.binary = require_tool("containerd")
        self.ctr = require_tool("ctr")
        self.workdir = workdir
        self.socket = workdir / "containerd.sock"
        config = workdir / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{workdir / "root"}"\n'
            f'state = "{workdir / "state"}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{self.socket}"\n'
            f'[ttrpc]\n  address = "{workdir / "ttrpc.sock"}"\n'
        )
        self.log = (workdir / "containerd.log").open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "--config", str(config)], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            assert self.proc.poll() is None, (workdir / "containerd.log").read_text()
            assert time.monotonic() < deadline, "containerd did not start"
            time.sleep(0.05)

    def run(self, *args: str) -> str:
        return run(self.ctr, "--address", str(self.socket), "--namespace", "proxy-test", *args)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    daemon = Containerd(tmp_path_factory.mktemp("containerd"))
    yield daemon
    daemon.stop()


@pytest.mark.parametrize("which", ["reg", "dist"])
def test_containerd_pulls_through_ns_with_the_documented_hosts_toml(
    cache: RegistryServer,
    upstreams: Upstreams,
    containerd: Containerd,
    tmp_path: Path,
    which: str,
) -> None:
    img = index([image(layers=2, layer_size=100_000), image(layers=1, layer_size=100_000)])
    repo = repo_name()
    upstreams.seed(which, repo, img)
    upstream_host = upstreams.front(which).host
    hosts = (
        doc_block("# /etc/containerd/certs.d/docker.io/hosts.toml")
        .replace("https://registry-1.docker.io", f"http://{upstream_host}")
        .replace("cache.example.com:5000", cache.host)
    )
    folder = tmp_path / "certs.d" / upstream_host
    folder.mkdir(parents=True)
    (folder / "hosts.toml").write_text(hosts)
    ref = f"{upstream_host}/{repo}:v1"
    containerd.run(
        "content", "fetch", "--all-platforms", "--hosts-dir", str(tmp_path / "certs.d"), ref
    )
    listed = containerd.run("content", "ls")
    for child in img.children:
        for digest in [child.digest, *child.blobs]:
            assert digest in listed
    only_the_cache_asked(upstreams, which)
    # Reached through ns, stored under the upstream's namespace.
    with httpx.Client(base_url=cache.url, timeout=30) as c:
        assert f"{which}/{repo}" in c.get("/v2/_catalog").json()["repositories"]
