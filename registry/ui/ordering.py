"""Pure: the orders the UI sorts by, the pages it cuts, and the query parameters that
choose them (anything unexpected falls back to the default, never an error)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

PAGE_SIZE = 50
MAX_PAGE = 1_000_000  # a page number beyond this is not a request worth parsing

# v1, 1.2, v1.2.3, 1.2.3-rc.1, 1.2.3_build (a tag cannot hold "+": Docker writes "_")
_SEMVER = re.compile(
    r"^[vV]?(0|[1-9]\d{0,17})(?:\.(0|[1-9]\d{0,17}))?(?:\.(0|[1-9]\d{0,17}))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:_[0-9A-Za-z._-]+)?$"
)

VersionKey = tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]


def version_key(tag: str) -> VersionKey | None:
    """Semantic-version precedence of a tag (``v`` prefix and missing minor or patch
    allowed), or None when the tag is no version. Pre-releases come before their
    release; their dot-separated parts compare as numbers when numeric, numbers before
    words; build metadata does not count (semver.org, 11)."""
    m = _SEMVER.match(tag)
    if m is None:
        return None
    major, minor, patch, pre = m.groups()
    parts: tuple[tuple[int, int, str], ...] = ()
    if pre is not None:
        parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (int(major), int(minor or 0), int(patch or 0), 0 if pre is not None else 1, parts)


def by_version(tags: Sequence[str], descending: bool) -> list[str]:
    """Versions in precedence order (ties by name), then the tags that are no version
    (``latest``, ``main``) by name, whichever the direction."""
    versions = [(k, t) for t in tags if (k := version_key(t)) is not None]
    versions.sort(reverse=descending)
    others = sorted((t for t in tags if version_key(t) is None), reverse=descending)
    return [t for _, t in versions] + others


def by_key(items: Sequence[T], key: Callable[[T], float | int | None], descending: bool) -> list[T]:
    """``items`` ordered by ``key``, those without one (None) last whichever the
    direction; the order of equal keys is kept (callers pass them sorted by name)."""
    known = [i for i in items if key(i) is not None]
    known.sort(key=lambda i: key(i) or 0, reverse=descending)
    return known + [i for i in items if key(i) is None]


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    number: int  # 1-based
    size: int
    total: int  # items on every page

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def first(self) -> int:
        """1-based position of the first item shown (0 when there is none)."""
        return (self.number - 1) * self.size + 1 if self.items else 0

    @property
    def last(self) -> int:
        return self.first + len(self.items) - 1 if self.items else 0


def paginate(items: Sequence[T], number: int, size: int = PAGE_SIZE) -> Page[T]:
    """Page ``number`` of ``items`` (moved into range: past the end is the last page)."""
    pages = max(1, -(-len(items) // size))
    number = min(max(1, number), pages)
    start = (number - 1) * size
    return Page(list(items[start : start + size]), number, size, len(items))


@dataclass(frozen=True)
class Listing:
    """What a listing page was asked for: a search, a sort column, a direction, a page."""

    query: str
    sort: str
    descending: bool
    page: int

    def params(self, **changes: str | int | bool) -> dict[str, str]:
        """The query parameters of this listing with ``changes``: the links of the
        sort headers and the pager."""
        values: dict[str, str | int | bool] = {
            "q": self.query,
            "sort": self.sort,
            "order": "desc" if self.descending else "asc",
            "page": self.page,
            **changes,
        }
        if "descending" in values:
            values["order"] = "desc" if values.pop("descending") else "asc"
        out = {k: str(v) for k, v in values.items()}
        if not out["q"]:
            del out["q"]
        if out["page"] == "1":
            del out["page"]
        return out


def parse_listing(params: Mapping[str, str], sorts: Mapping[str, bool], default: str) -> Listing:
    """The listing that query ``params`` ask for. ``sorts`` names each sort column with
    its natural direction (True: descending, e.g. newest first); anything else falls
    back to ``default``."""
    sort = params.get("sort", default)
    if sort not in sorts:
        sort = default
    order = params.get("order")
    descending = sorts[sort] if order not in ("asc", "desc") else order == "desc"
    raw_page = params.get("page", "1")
    # isdigit() alone also takes "²", which int() refuses.
    ok = raw_page.isascii() and raw_page.isdigit() and len(raw_page) <= 7
    page = int(raw_page) if ok else 1
    query = params.get("q", "").strip()[:200]
    return Listing(query, sort, descending, min(max(page, 1), MAX_PAGE))
