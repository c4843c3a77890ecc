"""The driver reads ListObjectsV2 answers with a parser of its own
(storage_backends/s3.py ``parse_listing``): on Ceph RGW, what it gives must be what
botocore's own parser and url-decoding give, for keys of every awkward kind, pages cut
short, delimiters and a start key."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from storage_backends.s3 import S3Driver
from tests.rgw import RgwServer

pytestmark = pytest.mark.s3

NAMES = ["a b/c", "a+b", "a%2Fb", "ü/x", "x&y<z>", "t1", "t2", "d/e/f", "sp ace", "~!*'()"]


def _plain(answer: dict[str, Any]) -> dict[str, Any]:
    answer.pop("ResponseMetadata", None)
    answer.pop("EncodingType", None)
    return answer


def test_listings_read_as_botocore_reads_them(rgw: RgwServer) -> None:
    prefix = f"listing-{uuid.uuid4().hex[:8]}/"
    plain = rgw.client()
    ours = S3Driver(rgw.s3_config().driver_settings())._s3
    for name in NAMES:
        plain.put_object(Bucket=rgw.bucket, Key=prefix + name, Body=b"x" * len(name))
    queries: list[dict[str, Any]] = [
        {"Prefix": prefix, "Delimiter": "/"},
        {"Prefix": prefix},
        {"Prefix": prefix, "MaxKeys": 3},
        {"Prefix": prefix, "MaxKeys": 2, "Delimiter": "/", "StartAfter": prefix + "a"},
        {"Prefix": prefix + "nothing/"},
    ]
    for query in queries:
        expected = _plain(plain.list_objects_v2(Bucket=rgw.bucket, **query))
        got = _plain(ours.list_objects_v2(Bucket=rgw.bucket, **query))
        assert got == expected, query
    # Following the continuation tokens reaches every key once.
    seen: list[str] = []
    kwargs: dict[str, Any] = {"Bucket": rgw.bucket, "Prefix": prefix, "MaxKeys": 4}
    while True:
        page = ours.list_objects_v2(**kwargs)
        seen += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        kwargs["ContinuationToken"] = page["NextContinuationToken"]
    assert sorted(seen) == sorted(prefix + n for n in NAMES)


def test_a_listing_that_fails_is_an_error_as_before(rgw: RgwServer) -> None:
    ours = S3Driver(rgw.s3_config().driver_settings())._s3
    with pytest.raises(ours.exceptions.NoSuchBucket):
        ours.list_objects_v2(Bucket=f"no-such-{uuid.uuid4().hex[:8]}", Prefix="x/")
