"""What an unfinished S3 writer saves between requests: one sidecar object with its
state and tail; a chunk of half a part or more sent as a part rather than kept as the
tail; and a sidecar of the previous version -- state JSON in ``<key>@upload``, the tail
apart in ``<key>@tail`` -- continued (a rolling upgrade with pushes in flight)."""

from __future__ import annotations

import json
import os

import pytest

from storage_backends.s3 import MIN_PART, S3Driver
from tests.rgw import RgwServer
from tests.s3.conftest import read_all

pytestmark = [pytest.mark.s3, pytest.mark.anyio]


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


async def test_a_chunk_of_half_a_part_or_more_is_sent_not_saved(
    driver: S3Driver, rgw: RgwServer
) -> None:
    """A client pushing 6 MiB chunks with 10 MiB parts: each chunk becomes a part of
    its own when its request ends, so no chunk is written to the sidecar and read back
    by the next request."""
    s3 = rgw.client()
    driver._part_size = 2 * MIN_PART
    key = driver._key("chunks/data")
    chunks = [os.urandom(MIN_PART + MIN_PART // 5) for _ in range(3)] + [os.urandom(1000)]
    for chunk in chunks:
        writer = await driver.writer("chunks/data", append=True)
        await writer.write(chunk)
        await writer.close()
        saved = s3.head_object(Bucket=rgw.bucket, Key=key + "@upload")["ContentLength"]
        assert saved < 1000 or chunk is chunks[-1]
    writer = await driver.writer("chunks/data", append=True)
    await writer.commit()
    assert await read_all(driver, "chunks/data") == b"".join(chunks)
