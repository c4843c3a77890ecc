"""The grammar of names, tags, digests and ranges, checked against the spec's regular
expressions and with generated input."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.errors import RegistryError
from registry.reference import (
    NAME_COMPONENT_MAX,
    ByteRange,
    is_valid_name,
    is_valid_tag,
    parse_content_range,
    parse_digest,
    parse_range,
)

# distribution-spec, "Pulling manifests": the normative patterns.
SPEC_NAME = re.compile(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")
SPEC_TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")

component = st.from_regex(r"\A[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*\Z", fullmatch=True).filter(
    lambda c: len(c) <= NAME_COMPONENT_MAX
)
names = st.lists(component, min_size=1, max_size=4).map("/".join).filter(lambda n: len(n) <= 255)


@given(names)
def test_spec_names_are_accepted(name: str) -> None:
    assert is_valid_name(name)


@given(st.text(alphabet="abc/._-Z0%", max_size=30))
def test_name_validity_matches_the_spec(name: str) -> None:
    assert is_valid_name(name) == bool(SPEC_NAME.match(name))


@pytest.mark.parametrize(
    "name", ["..", "a/..", "../a", "a/./b", "/a", "a/", "A", "a b", "a\nb", "a" * 256]
)
def test_traversal_and_junk_names_are_refused(name: str) -> None:
    assert not is_valid_name(name)


def test_component_length_limit() -> None:
    """Every component fits a file name with the one-character marker suffix (255 bytes)."""
    assert NAME_COMPONENT_MAX == 254
    assert is_valid_name("a" * 254) and is_valid_name("b/" + "a" * 253)
    assert not is_valid_name("a" * 255)
    assert not is_valid_name("a" * 256)


@given(st.text(alphabet="aZ9_.-:/", max_size=140))
def test_tag_validity_matches_the_spec(tag: str) -> None:
    assert is_valid_tag(tag) == bool(SPEC_TAG.match(tag))


@given(st.binary(max_size=200), st.sampled_from(["sha256", "sha512"]))
def test_real_digests_parse(data: bytes, algorithm: str) -> None:
    value = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
    assert str(parse_digest(value)) == value


@pytest.mark.parametrize(
    "value",
    [
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256:" + "A" * 64,
        "sha512:" + "a" * 64,
        "md5:" + "a" * 32,
        "sha256" + "a" * 64,
        "sha256:../../" + "a" * 58,
        "",
        ":",
    ],
)
def test_bad_digests_are_refused(value: str) -> None:
    with pytest.raises(RegistryError) as info:
        parse_digest(value)
    assert info.value.code.code == "DIGEST_INVALID"


@given(st.text(max_size=80))
def test_digest_parser_never_crashes(value: str) -> None:
    try:
        d = parse_digest(value)
    except RegistryError as exc:
        assert exc.code.code == "DIGEST_INVALID"
    else:
        assert re.fullmatch(r"[0-9a-f]+", d.hex)


@given(st.integers(0, 10**12), st.integers(0, 10**12))
def test_content_range_round_trip(a: int, b: int) -> None:
    start, end = min(a, b), max(a, b)
    assert parse_content_range(f"{start}-{end}") == ByteRange(start, end)
    assert parse_content_range(f"bytes {start}-{end}/*") == ByteRange(start, end)


@pytest.mark.parametrize("value", ["", "5", "a-b", "10-5", "-5", "1-2-3", "bytes=1-2x"])
def test_bad_content_range_is_416(value: str) -> None:
    with pytest.raises(RegistryError) as info:
        parse_content_range(value)
    assert info.value.status == 416


@given(st.integers(1, 10**9), st.integers(0, 10**9), st.integers(0, 10**9))
def test_range_is_within_the_blob(size: int, a: int, b: int) -> None:
    try:
        r = parse_range(f"bytes={a}-{b}", size)
    except RegistryError as exc:
        assert exc.status == 416 and a >= size
        return
    if r is None:
        assert b < a
    else:
        assert 0 <= r.start <= r.end < size
        assert r.start == a


@given(st.integers(0, 10**9), st.integers(1, 10**9))
def test_suffix_range(size: int, suffix: int) -> None:
    try:
        r = parse_range(f"bytes=-{suffix}", size)
    except RegistryError:
        assert size == 0
        return
    assert r is not None
    assert r.end == size - 1
    assert r.length == min(suffix, size)


@given(st.text(max_size=40), st.integers(0, 1000))
def test_range_parser_never_crashes(value: str, size: int) -> None:
    try:
        r = parse_range(value, size)
    except RegistryError as exc:
        assert exc.status == 416
    else:
        assert r is None or 0 <= r.start <= r.end < size
