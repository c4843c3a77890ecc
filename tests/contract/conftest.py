"""The backends the driver contract runs on: memory, filesystem in tmp_path, S3 on Ceph
RGW. Every driver is opened as production opens it: inside the CheckedDriver wrapper
(``bare`` reaches the driver inside, for tests of S3 internals)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from storage_backends.base import Driver
from storage_backends.checked import CheckedDriver, Observer
from storage_backends.filesystem import FilesystemDriver
from storage_backends.memory import MemoryDriver, MemoryStore
from storage_backends.s3 import MIN_PART, S3Driver
from tests.rgw import RgwServer


@dataclass
class Backend:
    """One store; ``open`` makes a fresh driver on it, as another process would."""

    name: str
    factory: Callable[..., Driver]
    list_stored: Callable[[], list[str]]
    opened: list[Driver] = field(default_factory=list)

    def open(self, observer: Observer | None = None, **s3_overrides: Any) -> CheckedDriver:
        driver = self.factory(**s3_overrides)
        self.opened.append(driver)
        return CheckedDriver(driver, observer)


def bare(driver: Driver) -> Driver:
    """The driver inside the wrapper."""
    assert isinstance(driver, CheckedDriver)
    return driver.inner


def _memory() -> Backend:
    store = MemoryStore()

    def stored() -> list[str]:
        return sorted([*store.files, *(f"upload:{p}" for p in store.unfinished)])

    return Backend("memory", lambda **_: MemoryDriver(store), stored)


def _filesystem(root: Path) -> Backend:
    def stored() -> list[str]:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    return Backend("filesystem", lambda **_: FilesystemDriver(root), stored)


def _s3(rgw: RgwServer, prefix: str) -> Backend:
    client = rgw.client()

    def stored() -> list[str]:
        """Every key and unfinished multipart upload under the prefix."""
        names: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=rgw.bucket, Prefix=prefix + "/"
        ):
            names += [o["Key"][len(prefix) + 1 :] for o in page.get("Contents", [])]
        for page in client.get_paginator("list_multipart_uploads").paginate(
            Bucket=rgw.bucket, Prefix=prefix + "/"
        ):
            names += [f"upload:{u['Key'][len(prefix) + 1 :]}" for u in page.get("Uploads", [])]
        return sorted(names)

    def factory(**overrides: Any) -> Driver:
        # The smallest part size S3 allows, so that a few MiB cross part boundaries.
        values = {"part_size": MIN_PART, **overrides}
        return S3Driver(rgw.s3_config(prefix=prefix, **values).driver_settings())

    return Backend("s3", factory, stored)


def _remove_s3_prefix(rgw: RgwServer, prefix: str) -> None:
    client = rgw.client()
    for page in client.get_paginator("list_multipart_uploads").paginate(
        Bucket=rgw.bucket, Prefix=prefix + "/"
    ):
        for up in page.get("Uploads", []):
            client.abort_multipart_upload(Bucket=rgw.bucket, Key=up["Key"], UploadId=up["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=rgw.bucket, Prefix=prefix + "/"
    ):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=rgw.bucket, Delete={"Objects": keys, "Quiet": True})


@contextlib.asynccontextmanager
async def _opened(
    request: pytest.FixtureRequest, name: str, tmp_path: Path
) -> AsyncIterator[Backend]:
    rgw: RgwServer | None = None
    if name == "memory":
        store = _memory()
    elif name == "filesystem":
        store = _filesystem(tmp_path / "store")
    else:
        rgw = request.getfixturevalue("rgw")
        prefix = f"contract/{uuid.uuid4().hex[:12]}"
        store = _s3(rgw, prefix)
    try:
        yield store
    finally:
        for d in store.opened:
            await d.close()
        if rgw is not None:
            _remove_s3_prefix(rgw, prefix)


@pytest.fixture(params=["memory", "filesystem", pytest.param("s3", marks=pytest.mark.s3)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with _opened(request, request.param, tmp_path) as store:
        yield store


@pytest.fixture
async def s3_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """For the few tests of S3-only behaviour (mark them ``s3``)."""
    async with _opened(request, "s3", tmp_path) as store:
        yield store


@pytest.fixture
def driver(backend: Backend) -> CheckedDriver:
    return backend.open()
