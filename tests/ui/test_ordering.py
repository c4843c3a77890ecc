"""The orders, pages and query parameters of the UI's listings (pure)."""

from __future__ import annotations

import itertools

from hypothesis import example, given
from hypothesis import strategies as st

from registry.ui.ordering import (
    Listing,
    by_key,
    by_version,
    paginate,
    parse_listing,
    version_key,
)

TAG = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,20}", fullmatch=True)


def test_versions_follow_semver_precedence() -> None:
    # semver.org, 11: the example chain, with a v prefix and short forms mixed in.
    chain = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "v1.0.0",
        "1.2",
        "v1.10.0",
        "2",
    ]
    assert by_version(list(reversed(chain)), descending=False) == chain
    assert by_version(chain, descending=True) == list(reversed(chain))


def test_tags_that_are_no_version_come_last_either_way() -> None:
    tags = ["latest", "v2.0.0", "main", "v10.0.0", "1.9"]
    assert by_version(tags, descending=True) == ["v10.0.0", "v2.0.0", "1.9", "main", "latest"]
    assert by_version(tags, descending=False) == ["1.9", "v2.0.0", "v10.0.0", "latest", "main"]


def test_what_is_a_version() -> None:
    assert version_key("v1.2.3") == version_key("1.2.3")
    assert version_key("1.2.3_build5") == version_key("1.2.3")  # build metadata
    for not_version in ("latest", "1.2.3.4", "v", "01.2.3", "1.2-", "sha256-abc.sig"):
        assert version_key(not_version) is None, not_version


@given(st.lists(TAG, unique=True))
def test_version_order_keeps_every_tag_once(tags: list[str]) -> None:
    for descending in (False, True):
        assert sorted(by_version(tags, descending)) == sorted(tags)


@given(st.lists(st.one_of(st.none(), st.integers(-5, 5))), st.booleans())
def test_missing_keys_sort_last_and_order_is_stable(keys: list[int | None], desc: bool) -> None:
    items = list(enumerate(keys))
    ordered = by_key(items, lambda i: i[1], desc)
    known = [i for i in ordered if i[1] is not None]
    assert ordered[len(known) :] == [i for i in items if i[1] is None]
    values = [i[1] for i in known]
    assert values == sorted(values, reverse=desc)  # type: ignore[type-var]
    for a, b in itertools.pairwise(known):
        if a[1] == b[1]:
            assert a[0] < b[0]


@given(st.lists(st.integers(), max_size=300), st.integers(1, 40), st.integers(-5, 50))
def test_pages_cover_every_item_once(items: list[int], size: int, asked: int) -> None:
    page = paginate(items, asked, size)
    assert 1 <= page.number <= page.pages
    pages = [paginate(items, n, size).items for n in range(1, page.pages + 1)]
    assert [x for p in pages for x in p] == items
    if items:
        assert items[page.first - 1 : page.last] == page.items


@given(st.dictionaries(st.sampled_from(["q", "sort", "order", "page", "x"]), st.text()))
@example({"page": "²"})  # a digit to str.isdigit(), not to int()
def test_any_query_parses_to_a_listing(params: dict[str, str]) -> None:
    listing = parse_listing(params, {"name": False, "pushed": True}, "name")
    assert listing.sort in ("name", "pushed")
    assert listing.page >= 1
    assert len(listing.query) <= 200


def test_a_sort_takes_its_natural_direction_unless_asked() -> None:
    sorts = {"name": False, "pushed": True}
    assert parse_listing({"sort": "pushed"}, sorts, "name").descending
    assert not parse_listing({"sort": "pushed", "order": "asc"}, sorts, "name").descending
    assert not parse_listing({"sort": "bogus"}, sorts, "name").descending


def test_links_keep_the_search_and_drop_defaults() -> None:
    listing = Listing("web", "pushed", True, 3)
    assert listing.params(page=4) == {"q": "web", "sort": "pushed", "order": "desc", "page": "4"}
    assert listing.params(sort="name", descending=False, page=1) == {
        "q": "web",
        "sort": "name",
        "order": "asc",
    }
