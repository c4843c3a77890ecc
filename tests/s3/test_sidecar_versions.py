"""An unfinished S3 writer saved by the previous version -- state JSON in ``<key>@upload``,
the tail apart in ``<key>@tail`` -- is continued by this one (a rolling upgrade with
pushes in flight), and what this one saves holds the tail in the state object."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator

import pytest

from storage_backends.s3 import MIN_PART, S3Driver
from tests.rgw import RgwServer

pytestmark = [pytest.mark.s3, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def driver(rgw: RgwServer) -> AsyncIterator[S3Driver]:
    d = S3Driver(rgw.s3_config(prefix=f"sidecars-{uuid.uuid4().hex[:12]}", part_size=MIN_PART))
    yield d
    await d.close()


async def read_all(driver: S3Driver, path: str) -> bytes:
    return b"".join([chunk async for chunk in driver.read(path)])


async def test_a_version_1_writer_is_continued(driver: S3Driver, rgw: RgwServer) -> None:
    s3 = rgw.client()
    key = driver._key("up/data")
    first = os.urandom(MIN_PART)
    tail = os.urandom(1000)
    upload = s3.create_multipart_upload(Bucket=rgw.bucket, Key=key)["UploadId"]
    part = s3.upload_part(Bucket=rgw.bucket, Key=key, UploadId=upload, PartNumber=1, Body=first)
    saved_tail = s3.put_object(Bucket=rgw.bucket, Key=key + "@tail", Body=tail)
    state = {
        "version": 1,
        "upload_id": upload,
        "parts": [[1, part["ETag"], len(first)]],
        "tail_size": len(tail),
        "tail_etag": saved_tail["ETag"],
    }
    s3.put_object(Bucket=rgw.bucket, Key=key + "@upload", Body=json.dumps(state).encode())

    writer = await driver.writer("up/data", append=True)
    assert writer.size == len(first) + len(tail)
    await writer.write(b"more")
    await writer.close()  # saved as this version saves it
    saved = s3.get_object(Bucket=rgw.bucket, Key=key + "@upload")["Body"].read()
    head, _, inline = saved.partition(b"\n")
    assert json.loads(head)["version"] == 2 and inline == tail + b"more"

    writer = await driver.writer("up/data", append=True)
    assert writer.size == len(first) + len(tail) + 4
    await writer.commit()
    assert await read_all(driver, "up/data") == first + tail + b"more"
    left = s3.list_objects_v2(Bucket=rgw.bucket, Prefix=key).get("Contents", [])
    assert [o["Key"] for o in left] == [key]  # both sidecars went with the commit
