"""Parts sent on as their bytes arrive, when the request said how many it brings
(``expect``, storage_backends/socket_put.py): the writer gathers no part in memory, the
object reads back exactly, and a request that brings fewer bytes than it said, or a part
the store refuses, leaves the writer holding what the store kept -- the size a client
resumes from."""

from __future__ import annotations

import os
import uuid

import httpx
import pytest

from storage_backends import StorageError, socket_put
from storage_backends.s3 import MIN_PART, S3Driver, S3Writer
from tests.asgi_registry import InProcessRegistry
from tests.images import push_blob, sha256
from tests.rgw import RgwServer
from tests.s3.conftest import read_all

pytestmark = [pytest.mark.s3, pytest.mark.anyio]

MiB = 1024 * 1024


async def write(writer: S3Writer, data: bytes, piece: int) -> int:
    """``data`` in pieces of ``piece`` bytes; the most the writer gathered meanwhile."""
    gathered = 0
    for i in range(0, len(data), piece):
        await writer.write_pieces([data[i : i + piece], b""])
        gathered = max(gathered, len(writer._buf))
    return gathered


@pytest.mark.parametrize(
    ("size", "piece"),
    [
        (MIN_PART, 64 * 1024),  # one part, exactly the smallest
        (MIN_PART + 1, MiB + 7),  # one part: the byte over is not a part of its own
        (12 * MiB, 256 * 1024 + 3),  # a part's worth, then the 7 MiB left as one part
        (3 * MiB, MiB),  # too little for a part: gathered, then PUT whole
    ],
)
async def test_the_bytes_a_request_said_it_brings_go_on_as_they_arrive(
    driver: S3Driver, size: int, piece: int
) -> None:
    data = os.urandom(size)
    writer = await driver.writer("one/data")
    writer.expect(size)
    gathered = await write(writer, data, piece)
    assert writer.size == size
    await writer.commit()
    assert await read_all(driver, "one/data") == data
    assert gathered == (0 if size >= MIN_PART else size)


async def test_what_a_writer_held_starts_the_first_streamed_part(driver: S3Driver) -> None:
    """A session's tail, saved by an earlier request, is sent first in the next one."""
    first, second = os.urandom(MiB), os.urandom(11 * MiB)
    writer = await driver.writer("tail/data")
    await writer.write(first)
    await writer.close()

    writer = await driver.writer("tail/data", append=True)
    writer.expect(len(second))
    assert await write(writer, second, MiB) == 0
    await writer.commit()
    assert await read_all(driver, "tail/data") == first + second


async def test_a_request_cut_short_keeps_only_what_the_store_took(driver: S3Driver) -> None:
    """12 MiB said, 7 MiB brought: the first part (5 MiB) was taken, the second was not;
    the next request resumes at 5 MiB. With a tail held before, the tail is kept."""
    tail, rest = os.urandom(MiB), os.urandom(20 * MiB)
    writer = await driver.writer("cut/data")
    await writer.write(tail)
    await writer.close()

    writer = await driver.writer("cut/data", append=True)
    writer.expect(len(rest))
    await write(writer, rest[: 2 * MiB], MiB)  # in the first part, with the tail
    await writer.close()
    writer = await driver.writer("cut/data", append=True)
    assert writer.size == len(tail)  # the part never ended: the tail alone is kept

    writer.expect(len(rest))
    await write(writer, rest[: 7 * MiB], MiB)
    await writer.close()
    writer = await driver.writer("cut/data", append=True)
    assert writer.size == MIN_PART  # the first part; the second one's bytes are gone

    kept = MIN_PART - len(tail)
    writer.expect(len(rest) - kept)
    await write(writer, rest[kept:], 3 * MiB)
    await writer.commit()
    assert await read_all(driver, "cut/data") == tail + rest


async def test_a_part_the_store_refuses_is_not_counted(driver: S3Driver, rgw: RgwServer) -> None:
    data = os.urandom(15 * MiB)
    writer = await driver.writer("refused/data")
    writer.expect(len(data))
    await write(writer, data[:MIN_PART], MiB)
    assert writer.size == MIN_PART and writer._upload_id is not None
    # The upload ended behind the writer's back (a lifecycle rule, another process).
    rgw.client().abort_multipart_upload(
        Bucket=rgw.bucket, Key=driver._key("refused/data"), UploadId=writer._upload_id
    )
    with pytest.raises(StorageError, match="was not taken"):
        await write(writer, data[MIN_PART:], MiB)
    assert writer.size == MIN_PART
    await writer.cancel()


async def test_a_store_that_refuses_presigned_parts_gets_gathered_ones(
    driver: S3Driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that does not take a presigned part (here: a signature it rejects) fails
    that request; the process gathers its parts from then on, and pushes work."""
    presign = driver._s3.generate_presigned_url

    def wrongly_signed(*args: object, **kwargs: object) -> str:
        return presign(*args, **kwargs).replace("X-Amz-Signature=", "X-Amz-Signature=0")

    monkeypatch.setattr(driver._s3, "generate_presigned_url", wrongly_signed)
    data = os.urandom(6 * MiB)
    writer = await driver.writer("refusing/data")
    writer.expect(len(data))
    with pytest.raises(StorageError, match="was not taken: 403"):
        await write(writer, data, MiB)
    assert writer.size == 0
    await writer.cancel()

    writer = await driver.writer("refusing/data")
    writer.expect(len(data))
    await write(writer, data, MiB)
    await writer.commit()
    assert await read_all(driver, "refusing/data") == data


def test_pushes_that_say_their_length_stream_their_parts(
    rgw: RgwServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the API: a POST ?digest= with the blob, a PUT with it, and PATCHes with a
    Content-Length stream their parts; a PATCH in chunked transfer encoding gathers
    them. Each blob pulls back whole."""
    parts: list[int] = []
    finish = socket_put.Put.finish

    async def counted(put: socket_put.Put) -> tuple[int, dict[str, str], bytes]:
        parts.append(1)
        return await finish(put)

    monkeypatch.setattr(socket_put.Put, "finish", counted)
    s3 = rgw.s3_config(prefix=f"streamed-api-{uuid.uuid4().hex[:12]}", part_size=MIN_PART)
    config = {"storage": {"driver": "s3", "s3": s3.model_dump(exclude_none=True)}}
    with InProcessRegistry(config, S3Driver(s3)) as registry, registry.client() as http:
        repo = "streamed/app"

        def pushed(data: bytes) -> int:
            """Streamed parts since the last call; ``data`` pulls back whole."""
            r = http.get(f"/v2/{repo}/blobs/{sha256(data)}")
            assert r.status_code == 200 and r.content == data
            count = len(parts)
            parts.clear()
            return count

        one_post = os.urandom(11 * MiB)
        push_blob(http, repo, one_post)
        assert pushed(one_post) == 2  # 5 MiB, then the 6 MiB left

        one_put = os.urandom(6 * MiB)
        r = http.post(f"/v2/{repo}/blobs/uploads/")
        url = httpx.URL(r.headers["Location"]).copy_merge_params({"digest": sha256(one_put)})
        assert http.put(url, content=one_put).status_code == 201
        assert pushed(one_put) == 1

        chunks = [os.urandom(6 * MiB), os.urandom(MiB), os.urandom(7 * MiB)]
        location = http.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
        for chunk in chunks:
            r = http.patch(location, content=chunk)
            assert r.status_code == 202, r.text
            location = r.headers["Location"]
        whole = b"".join(chunks)
        url = httpx.URL(location).copy_merge_params({"digest": sha256(whole)})
        assert http.put(url).status_code == 201
        # 6 MiB streamed; 1 MiB gathered, kept as the tail; the tail and 7 MiB streamed.
        assert pushed(whole) == 2

        unsaid = os.urandom(6 * MiB)
        location = http.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
        r = http.patch(location, content=iter([unsaid[: 3 * MiB], unsaid[3 * MiB :]]))
        assert r.status_code == 202, r.text
        url = httpx.URL(r.headers["Location"]).copy_merge_params({"digest": sha256(unsaid)})
        assert http.put(url).status_code == 201
        assert pushed(unsaid) == 0
