"""The S3 driver's timestamp parser agrees with botocore's own on what S3 sends: ISO 8601
in XML bodies and HTTP dates in headers, and leaves anything else to botocore's."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime

import botocore.utils
from hypothesis import given
from hypothesis import strategies as st

from storage_backends.s3 import parse_timestamp

moments = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@given(moments)
def test_iso_8601_as_in_listings(moment: datetime) -> None:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    assert parse_timestamp(text) == botocore.utils.parse_timestamp(text)
    assert parse_timestamp(text).utcoffset() is not None


@given(moments)
def test_http_dates_as_in_headers(moment: datetime) -> None:
    text = email.utils.format_datetime(moment.replace(microsecond=0), usegmt=True)
    assert parse_timestamp(text) == botocore.utils.parse_timestamp(text)


def test_other_forms_go_to_botocore() -> None:
    for text in ("1764921600", "2026-12-05T08:00:00+01:00", "2026-12-05"):
        assert parse_timestamp(text) == botocore.utils.parse_timestamp(text)
