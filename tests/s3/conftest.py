"""Fixtures of the S3 driver's own tests on Ceph RGW: anyio on asyncio, and a driver on
a key prefix of its own with parts of S3's smallest size."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from storage_backends.s3 import MIN_PART, S3Driver
from tests.rgw import RgwServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def driver(rgw: RgwServer, request: pytest.FixtureRequest) -> AsyncIterator[S3Driver]:
    prefix = f"{request.module.__name__.rsplit('.', 1)[-1]}-{uuid.uuid4().hex[:12]}"
    d = S3Driver(rgw.s3_config(prefix=prefix, part_size=MIN_PART))
    yield d
    await d.close()


async def read_all(driver: S3Driver, path: str) -> bytes:
    return b"".join([chunk async for chunk in driver.read(path)])
