"""Shared fixtures: the registry in this process over a memory driver, real `registry
serve` processes, real S3 (Ceph RGW), test images.

Fixture names, one per meaning:
  api_target     the registry the API suite talks to (tests/api parametrizes it)
  api_server     the real process behind api_target; a test that asks for it runs on
                 the real-process targets only
  client         an httpx.Client of api_target
  make_registry  a fresh in-process registry with a configuration of the test's own
  repo           a fresh repository name
  anyio_backend  asyncio, for the async tests (marked anyio)
  rgw            a real S3 server (Ceph RGW, tests/rgw.py), one per session

Folders add their own (tests/auth, tests/gc, tests/ops, tests/contract conftest.py), each
named for what it is: ``token_registry`` (in this process), ``token_server`` (a real
process), ``gc_server``, ``rig``... A real process is a ``*_server``; a registry in this
process is a ``*_registry``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from storage_backends import Driver
from tests.asgi_registry import InProcessRegistry
from tests.server import RegistryServer
from tests.targets import RegistryTarget, ServerTarget

pytest_plugins = ["tests.rgw"]

IN_CI = os.environ.get("CI", "").lower() == "true"
BACKENDS = ["filesystem", pytest.param("s3", marks=pytest.mark.s3)]
# The API suite runs in this process over the memory driver, and against real processes
# where only they show something: 4 workers on one data folder (upload sessions and
# everything else must live in storage, not in one process's memory), and S3.
IN_PROCESS = "memory"
REAL_TARGETS = ["filesystem-4workers", pytest.param("s3", marks=pytest.mark.s3)]
API_TARGETS = [IN_PROCESS, *REAL_TARGETS]


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


@pytest.fixture(scope="session")
def api_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryTarget]:
    """One registry per target, shared by the tests that ask for it: they use their own
    repository names."""
    target = getattr(request, "param", IN_PROCESS)
    if target == IN_PROCESS:
        with InProcessRegistry() as registry:
            yield registry
        return
    workdir = tmp_path_factory.mktemp("registry")
    if target == "s3":
        config = storage_config(request, "s3")
        server = start_server(request, workdir, config=config)
        yield ServerTarget(server, s3_listing(request, config["storage"]["s3"]["prefix"]))
        return
    assert target == "filesystem-4workers"
    yield ServerTarget(start_server(request, workdir, workers=4))


@pytest.fixture(scope="module")
def api_server(api_target: RegistryTarget) -> RegistryServer:
    assert isinstance(api_target, ServerTarget), "api_server runs on real processes only"
    return api_target.server


@pytest.fixture
def client(api_target: RegistryTarget) -> Iterator[httpx.Client]:
    with api_target.client() as c:
        yield c


@pytest.fixture
def make_registry() -> Iterator[Callable[..., InProcessRegistry]]:
    """``make_registry(config=None, driver=None)``: a started in-process registry (over
    a fresh MemoryDriver unless given a driver), stopped after the test."""
    started: list[InProcessRegistry] = []

    def make(
        config: dict[str, Any] | None = None, driver: Driver | None = None
    ) -> InProcessRegistry:
        registry = InProcessRegistry(config, driver)
        registry.start()
        started.append(registry)
        return registry

    yield make
    for registry in started:
        registry.stop()


def s3_listing(request: pytest.FixtureRequest, prefix: str) -> Callable[[], list[str]]:
    """Every key under ``prefix`` on RGW, relative to it."""
    rgw = request.getfixturevalue("rgw")

    def listing() -> list[str]:
        client = rgw.client()
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=rgw.bucket, Prefix=prefix + "/"
        )
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        return sorted(key[len(prefix) + 1 :] for key in keys)

    return listing


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def repo() -> str:
    """A fresh repository name (multi-component, as real ones are)."""
    return f"test/{uuid.uuid4().hex[:10]}/app"
