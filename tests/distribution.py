"""CNCF distribution (Debian's ``docker-registry``, 2.8) on an ephemeral 127.0.0.1 port:
a foreign registry for the remote client, the cache and replication tests.

``start_distribution(request, workdir, users=...)`` starts one (HTTP Basic auth from an
htpasswd file when ``users`` is given) and stops it when the requesting scope ends. The
``distribution`` and ``distribution_basic`` fixtures are session-wide instances; import
them into a conftest to use them.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml

from tests.conftest import require_tool
from tests.server import free_port

USER, PASSWORD = "remote-user", "remote-pw"


class DistributionServer:
    def __init__(
        self,
        workdir: Path,
        users: dict[str, str] | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.binary = require_tool("docker-registry")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.users = dict(users or {})
        self.port = free_port()
        self.config_file = workdir / "distribution.yml"
        self.log_file = workdir / "distribution.log"
        doc: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(workdir / "data")},
                "delete": {"enabled": True},
            },
            "http": {"addr": f"127.0.0.1:{self.port}", "secret": secrets.token_hex(16)},
        }
        if self.users:
            htpasswd = workdir / "htpasswd"
            htpasswd.write_text(
                "".join(
                    f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n"
                    for u, p in self.users.items()
                )
            )
            doc["auth"] = {"htpasswd": {"realm": "distribution", "path": str(htpasswd)}}
        doc.update(config or {})
        self.config_file.write_text(yaml.safe_dump(doc))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        log = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "serve", str(self.config_file)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/v2/", timeout=1.0).status_code in (200, 401):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"docker-registry did not answer within {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def client(self, **kwargs: Any) -> httpx.Client:
        """A plain HTTP client, authenticated as the first user when there are users."""
        if self.users:
            kwargs.setdefault("auth", next(iter(self.users.items())))
        kwargs.setdefault("timeout", 30.0)
        return httpx.Client(base_url=self.url, **kwargs)


def start_distribution(
    request: pytest.FixtureRequest,
    workdir: Path,
    users: dict[str, str] | None = None,
    config: dict[str, Any] | None = None,
) -> DistributionServer:
    server = DistributionServer(workdir, users, config)
    server.start()
    request.addfinalizer(server.stop)
    return server


@pytest.fixture(scope="session")
def distribution(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> DistributionServer:
    """Anonymous read-write distribution, shared by the session."""
    return start_distribution(request, tmp_path_factory.mktemp("distribution"))


@pytest.fixture(scope="session")
def distribution_basic(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> DistributionServer:
    """Distribution behind HTTP Basic auth: user ``USER``, password ``PASSWORD``."""
    return start_distribution(
        request, tmp_path_factory.mktemp("distribution-basic"), {USER: PASSWORD}
    )
