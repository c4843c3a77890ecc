"""The complete examples of docs/auth.md run as written: the configuration is written to
``registry.yml``, and every command of the shell block that follows it runs in a fresh
folder with bash -- `registry user`, `registry serve` (in the background), skopeo and
curl against the real server. The one change: the example's port becomes a free one, so
that tests can run side by side."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import require_tool
from tests.images import image, write_oci_layout
from tests.server import free_port

DOC = Path(__file__).resolve().parents[2] / "docs" / "auth.md"
PASSWORDS = {
    name: f"{name}-pw-{i}" for i, name in enumerate(["admin", "alice", "bob", "ci", "dev"])
}


def example(marker: str) -> tuple[str, list[str]]:
    """The YAML block that starts with ``marker`` and the commands of the shell block
    after it (continuation lines joined, comments dropped)."""
    text = DOC.read_text()
    start = text.index(f"```yaml\n{marker}")
    config = text[start + len("```yaml\n") : text.index("```", start + 8)]
    shell_start = text.index("```sh\n", start) + len("```sh\n")
    shell = text[shell_start : text.index("```", shell_start)]
    commands = []
    for line in shell.replace("\\\n", " ").splitlines():
        command = line.split("  #")[0].strip()
        if command and not command.startswith("#"):
            commands.append(command)
    return config, commands


@contextmanager
def run_example(tmp_path: Path, marker: str, port: int) -> Iterator[list[str]]:
    """Run the example's commands in ``tmp_path``; yields the output of each command
    once all of them have run (the server still up)."""
    require_tool("skopeo")
    config, commands = example(marker)
    documented = re.search(r"^  port: (\d+)$", config, re.M)
    assert documented is not None
    assert documented.group(1) != "5000", "5000 is the README's server"

    def local(text: str) -> str:
        return text.replace(documented.group(1), str(port))

    (tmp_path / "registry.yml").write_text(local(config))
    write_oci_layout(tmp_path / "image", image(layers=1, layer_size=512), "latest")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update({f"{name.upper()}_PASSWORD": pw for name, pw in PASSWORDS.items()})
    outputs: list[str] = []
    server: subprocess.Popen[bytes] | None = None
    log = (tmp_path / "server.log").open("wb")
    try:
        for command in map(local, commands):
            if command.startswith("registry serve"):
                server = subprocess.Popen(
                    ["bash", "-c", f"exec {command}"],
                    cwd=tmp_path,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                wait_for(server, port, tmp_path / "server.log")
                continue
            words = shlex.split(command)
            # A command that asks for a password gets the user's on standard input.
            asked = words[:3] == ["registry", "user", "add"] and "|" not in command
            result = subprocess.run(
                ["bash", "-c", command],
                cwd=tmp_path,
                env=env,
                input=f"{PASSWORDS[words[3]]}\n" if asked else "",
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
            outputs.append(result.stdout)
        assert server is not None, "the example starts no server"
        yield outputs
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
        log.close()


def wait_for(server: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()
        try:
            httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"the example's server did not answer:\n{log.read_text()}")


def test_the_token_example_runs(tmp_path: Path) -> None:
    port = free_port()
    with run_example(tmp_path, "# docs/auth.md: token example", port) as outputs:
        assert (tmp_path / "token-signing-key.pem").exists()
        assert '"Name": "localhost:' in outputs[-1]  # skopeo inspect, anonymously
        assert (tmp_path / "copy" / "index.json").exists()  # bob's pull
        token = httpx.get(
            f"http://127.0.0.1:{port}/auth/token",
            params={"service": "registry.example.com", "scope": "repository:team-a/app:push"},
            auth=("bob", PASSWORDS["bob"]),
        ).json()["token"]
        upload = httpx.post(
            f"http://127.0.0.1:{port}/v2/team-a/app/blobs/uploads/",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert upload.status_code == 403  # bob reads team-a, never writes


def test_the_basic_example_runs(tmp_path: Path) -> None:
    port = free_port()
    with run_example(tmp_path, "# docs/auth.md: basic example", port) as outputs:
        assert outputs[2] == "ci\ndev\n"  # registry user list
        assert yaml.safe_load(outputs[-1]) == {"name": "ci/tools/builder", "tags": ["v1"]}
        base = f"http://127.0.0.1:{port}"
        anonymous = httpx.get(f"{base}/v2/")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"].startswith('Basic realm="registry"')
        dev = httpx.post(f"{base}/v2/ci/x/blobs/uploads/", auth=("dev", PASSWORDS["dev"]))
        assert dev.status_code == 403


@pytest.mark.parametrize("marker", ["# docs/auth.md: token example", "# docs/auth.md: basic"])
def test_examples_stay_off_the_readme_port(marker: str) -> None:
    config, commands = example(marker)
    assert "5000" not in config and not any("5000" in c for c in commands)
