"""The header grammar of registry answers: challenges, links, Retry-After, ranges, rate
limits. Upstreams are not trusted: nothing here may raise on any input."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from registry.remote.headers import (
    Challenge,
    RateLimit,
    content_range,
    next_link,
    parse_challenges,
    rate_limit,
    retry_after,
    upload_offset,
)
from registry.remote.session import normalize_scopes


def test_bearer_challenge_of_docker_hub() -> None:
    [c] = parse_challenges(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/alpine:pull"'
    )
    assert c.scheme == "bearer"
    assert c.realm == "https://auth.docker.io/token"
    assert c.service == "registry.docker.io"
    assert c.scopes == ("repository:library/alpine:pull",)
    assert c.error is None


def test_challenge_with_error_several_scopes_and_escapes() -> None:
    [c] = parse_challenges(
        'Bearer realm="http://r/t", error="insufficient_scope", '
        'scope="repository:a:pull,push repository:b:pull", x="say \\"hi\\""'
    )
    assert c.error == "insufficient_scope"
    assert c.scopes == ("repository:a:pull,push", "repository:b:pull")
    assert c.params["x"] == 'say "hi"'


def test_several_challenges_in_one_header() -> None:
    got = parse_challenges('Basic realm="registry", Bearer realm="https://t/token",service=s')
    assert got == [
        Challenge("basic", {"realm": "registry"}),
        Challenge("bearer", {"realm": "https://t/token", "service": "s"}),
    ]


def test_scheme_is_case_insensitive_and_token68_is_skipped() -> None:
    got = parse_challenges('NEGOTIATE abc==, BASIC Realm="x"')
    assert [c.scheme for c in got] == ["negotiate", "basic"]
    assert got[1].realm == "x"


@given(st.text(max_size=200))
def test_challenge_parser_takes_anything(header: str) -> None:
    for c in parse_challenges(header):
        assert c.scheme == c.scheme.lower()


@given(
    st.dictionaries(
        st.sampled_from(["realm", "service", "scope", "error"]),
        st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40),
    )
)
def test_quoted_parameters_round_trip(params: dict[str, str]) -> None:
    def quote(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

    header = "Bearer " + ",".join(f"{k}={quote(v)}" for k, v in params.items())
    [c] = parse_challenges(header)
    assert c.params == params


def test_next_link() -> None:
    assert next_link('</v2/a/tags/list?n=2&last=b>; rel="next"') == "/v2/a/tags/list?n=2&last=b"
    assert next_link('<https://x/y>; rel="prev", </v2/next>; rel=next') == "/v2/next"
    assert next_link('</v2/x>; rel="prev"') is None
    assert next_link(None) is None


@given(st.text(max_size=200))
def test_link_parser_takes_anything(header: str) -> None:
    next_link(header)


def test_retry_after_seconds_and_date() -> None:
    assert retry_after("120") == 120.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    assert retry_after("soon") is None
    assert retry_after(None) is None
    assert retry_after("99999999999") == 7 * 86400


@given(st.text(max_size=60))
def test_retry_after_takes_anything(value: str) -> None:
    got = retry_after(value)
    assert got is None or got >= 0


def test_upload_offset() -> None:
    assert upload_offset("0-1023") == 1024
    assert upload_offset("bytes=0-9") == 10
    assert upload_offset("0-0") == 0  # an empty session, as distribution and we send it
    assert upload_offset("5-9") is None
    assert upload_offset("junk") is None
    assert upload_offset(None) is None


def test_content_range() -> None:
    assert content_range("bytes 10-19/100") == (10, 19, 100)
    assert content_range("bytes 10-19/*") == (10, 19, None)
    assert content_range("bytes 19-10/100") is None
    assert content_range("10-19") is None


def test_docker_hub_rate_limit() -> None:
    assert rate_limit("100;w=21600", "76;w=21600") == RateLimit(100, 76, 21600)
    assert rate_limit(None, "5") == RateLimit(None, 5, None)
    assert rate_limit(None, None) is None
    assert rate_limit("x", "y") is None


def test_scopes_merge_per_resource() -> None:
    assert normalize_scopes(
        ["repository:a:push,pull", "repository:a:pull", "repository:b:pull", "junk"]
    ) == ("repository:a:pull,push", "repository:b:pull")
    assert normalize_scopes(["registry:catalog:*"]) == ("registry:catalog:*",)
