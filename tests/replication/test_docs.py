"""The two-site example of docs/replication.md, run as written: its two configuration
files, its `registry serve` lines, and its shell blocks in order (buildah, skopeo,
`registry replicate`), with only the ports changed to free ones. A push to site A shows
up on site B with the same digest, a delete follows it, and B's pull rule run by hand
mirrors A's base image."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import require_tool
from tests.server import free_port

DOC = Path(__file__).resolve().parents[2] / "docs" / "replication.md"


def example() -> tuple[dict[str, str], list[str]]:
    """The section's configuration files (by name) and shell blocks, in order."""
    text = DOC.read_text()
    section = text[text.index("## Two sites in five minutes") :]
    section = section[: section.index("\n## ", 1)]
    files = {}
    for block in re.findall(r"```yaml\n(.*?)```", section, re.S):
        name = block.splitlines()[0].removeprefix("# ").strip()
        files[name] = block
    return files, re.findall(r"```sh\n(.*?)```", section, re.S)


@pytest.fixture
def shell_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """buildah with its storage in a temp folder; `registry` of this checkout on PATH."""
    for tool in ("buildah", "skopeo"):
        require_tool(tool)
    root = tmp_path / "containers"
    root.mkdir()
    (root / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{root}/graph"\nrunroot = "{root}/run"\n'
    )
    (root / "containers.conf").write_text(
        f'[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\ntmp_dir = "{root}/tmp"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env |= {
        "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
        "CONTAINERS_CONF": str(root / "containers.conf"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    yield env
    subprocess.run(["buildah", "rm", "--all"], env=env, capture_output=True, check=False)
    subprocess.run(
        ["buildah", "rmi", "--all", "--force"], env=env, capture_output=True, check=False
    )
    shutil.rmtree(root, ignore_errors=True)


def run(block: str, cwd: Path, env: dict[str, str], *, until_ok: float = 0.0) -> str:
    deadline = time.monotonic() + until_ok
    while True:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0:
            return done.stdout
        if time.monotonic() > deadline:
            raise AssertionError(f"{block}\nfailed ({done.returncode}):\n{done.stderr}")
        time.sleep(0.5)


def test_the_two_site_example_runs_as_written(
    tmp_path: Path, shell_env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    files, blocks = example()
    assert set(files) == {"site-a.yml", "site-b.yml"}
    ports = {"5001": str(free_port()), "5002": str(free_port())}

    def local(text: str) -> str:
        for documented, port in ports.items():
            text = text.replace(f"127.0.0.1:{documented}", f"127.0.0.1:{port}")
            text = text.replace(f"port: {documented}", f"port: {port}")
        return text

    for name, content in files.items():
        (tmp_path / name).write_text(local(content))
    serve, push, compare, delete, pull = (local(b) for b in blocks)

    for line in serve.splitlines():
        command = line.removesuffix("&").split()
        assert command[:2] == ["registry", "serve"], line
        log = (tmp_path / f"{command[-1]}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "registry", *command[1:]],
            cwd=tmp_path,
            env=shell_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        request.addfinalizer(proc.kill)
    for port in ports.values():
        wait_for_server(f"http://127.0.0.1:{port}")

    run(push, tmp_path, shell_env)
    deadline = time.monotonic() + 30
    while True:  # B has it within a second or two, and the status says so
        out = run(compare, tmp_path, shell_env, until_ok=30).splitlines()
        if any(line.startswith("  last delivery: ok") for line in out):
            break
        assert time.monotonic() < deadline, "\n".join(out)
        time.sleep(0.5)
    digest_a, digest_b = out[0], out[1]
    assert digest_a.startswith("sha256:") and digest_a == digest_b
    assert out[2] == f"to-b: push to http://127.0.0.1:{ports['5002']} (events)"

    run(delete, tmp_path, shell_env)
    b = f"http://127.0.0.1:{ports['5002']}/v2/team/hello/manifests/{digest_b}"
    deadline = time.monotonic() + 30
    while httpx.get(b).status_code != 404:
        assert time.monotonic() < deadline, "the delete did not reach site B"
        time.sleep(0.2)

    out = run(pull, tmp_path, shell_env).splitlines()  # buildah prints the image's id first
    [summary] = [line for line in out if line.startswith("bases-from-a: ")]
    assert summary.startswith("bases-from-a: ok in "), summary
    # B's own first pass (seconds after its start, jittered) may have run just before the
    # one by hand, or waited for it: between them, the image was copied once.
    status = run(
        "registry replicate status bases-from-a --json --config site-b.yml", tmp_path, shell_env
    )
    [rule] = json.loads(status)["rules"]
    assert rule["totals"]["artifacts"] == 1, rule
    a = f"http://127.0.0.1:{ports['5001']}/v2/base/hello/manifests/1"
    accept = "application/vnd.oci.image.manifest.v1+json"
    assert out[-1] == httpx.get(a, headers={"Accept": accept}).headers["docker-content-digest"]


def wait_for_server(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v2/", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not start")
