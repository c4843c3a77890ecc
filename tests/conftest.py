"""Shared fixtures: real `registry serve` processes, real S3 (Ceph RGW), test images."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import RegistryServer

pytest_plugins = ["tests.rgw"]

IN_CI = os.environ.get("CI", "").lower() == "true"
BACKENDS = ["filesystem", pytest.param("s3", marks=pytest.mark.s3)]
# The API suite also runs against 4 worker processes: upload sessions and everything
# else must live in storage, not in one process's memory.
API_TARGETS = [*BACKENDS, "filesystem-4workers"]


def require_tool(tool: str) -> str:
    """The path of an outside tool; skip without it, but fail in CI (CI=true)."""
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed (apt-get install {tool})"
        if IN_CI:
            pytest.fail(message + " -- required in CI")
        pytest.skip(message)
    return path


def storage_config(request: pytest.FixtureRequest, backend: str) -> dict[str, Any]:
    """The `storage:` section for a backend; S3 gets its own key prefix on RGW."""
    if backend == "filesystem":
        return {}
    rgw = request.getfixturevalue("rgw")
    s3 = rgw.s3_config(prefix=f"t-{uuid.uuid4().hex[:12]}")
    return {"storage": {"driver": "s3", "s3": s3.model_dump(exclude_none=True)}}


def start_server(
    request: pytest.FixtureRequest,
    workdir: Path,
    backend: str = "filesystem",
    config: dict[str, Any] | None = None,
    **kwargs: Any,
) -> RegistryServer:
    merged = storage_config(request, backend)
    for key, value in (config or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    server = RegistryServer(workdir, merged, **kwargs)
    server.start()
    request.addfinalizer(server.stop)
    return server


@pytest.fixture(scope="module", params=API_TARGETS)
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> RegistryServer:
    """One server per test module and target; tests use their own repository names."""
    backend, _, workers = request.param.partition("-")
    return start_server(
        request, tmp_path_factory.mktemp("registry"), backend, workers=4 if workers else 1
    )


@pytest.fixture
def client(registry: RegistryServer) -> Iterator[httpx.Client]:
    with registry.client() as c:
        yield c


@pytest.fixture
def repo() -> str:
    """A fresh repository name (multi-component, as real ones are)."""
    return f"test/{uuid.uuid4().hex[:10]}/app"
