"""Semantic versions of tags and the range grammar that replication filters take (pure).

Tags are read leniently, as registries name releases: an optional ``v``, one to three
numeric parts (missing ones are 0: ``3.20`` is 3.20.0) and an optional pre-release
after ``-`` (``1.2.3-rc.1``). Tags cannot hold ``+``, so there is no build metadata.

Ranges follow node-semver, the grammar npm and Helm users write:

- comparators ``=``, ``<``, ``<=``, ``>``, ``>=`` with full or partial versions (``>=1.2``);
- ``1.2.x``, ``1.x``, ``*`` and bare partial versions (``1.2`` is ``1.2.x``);
- ``^1.2.3`` (compatible: below the next major, or minor/patch for 0.x), ``~1.2.3``
  (below the next minor);
- ``A - B`` (inclusive), comparators separated by spaces (and), ranges by ``||`` (or).

A pre-release version satisfies a range only when it satisfies every comparator of one
alternative and one of those comparators names a pre-release of the same
``major.minor.patch`` (node-semver's rule): ``>=1.2.0`` does not select ``1.3.0-rc.1``,
``>=1.3.0-rc.0`` does. Tags such as ``3.20-alpine`` read as pre-releases of 3.20.0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_VERSION = re.compile(r"^[vV]?(\d{1,9})(?:\.(\d{1,9}))?(?:\.(\d{1,9}))?(?:-([0-9A-Za-z.-]+))?$")
_PARTIAL = re.compile(
    r"^[vV=]?\s*(\d{1,9}|[xX*])(?:\.(\d{1,9}|[xX*]))?(?:\.(\d{1,9}|[xX*]))?"
    r"(?:-([0-9A-Za-z.-]+))?$"
)
_COMPARATOR = re.compile(r"^(<=|>=|<|>|=|\^|~>?)?\s*(.*)$")
_WILDCARDS = ("x", "X", "*")


class RangeError(ValueError):
    """A range that does not follow the grammar; the message says where."""


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        return text + ("-" + ".".join(self.prerelease) if self.prerelease else "")

    @property
    def release(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        if self.release != other.release:
            return self.release < other.release
        # A release sorts after its pre-releases.
        if not self.prerelease or not other.prerelease:
            return bool(self.prerelease) and not other.prerelease
        return _prerelease_key(self.prerelease) < _prerelease_key(other.prerelease)


def _prerelease_key(parts: tuple[str, ...]) -> tuple[tuple[int, int, str], ...]:
    # Numeric identifiers sort numerically and before alphanumeric ones (semver 11.4).
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def _prerelease(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    parts = tuple(text.split("."))
    if any(not p for p in parts):
        raise ValueError(f"empty pre-release identifier in {text!r}")
    return parts


def parse_version(tag: str) -> Version | None:
    """The version a tag names, or None when it names none."""
    m = _VERSION.match(tag)
    if m is None:
        return None
    try:
        pre = _prerelease(m.group(4))
    except ValueError:
        return None
    return Version(int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0), pre)


# ------------------------------------------------------------------------------ ranges

Op = str  # one of "<", "<=", ">", ">=", "="


@dataclass(frozen=True)
class Comparator:
    op: Op
    version: Version

    def test(self, v: Version) -> bool:
        if self.op == "=":
            return v == self.version
        if self.op == "<":
            return v < self.version
        if self.op == "<=":
            return v <= self.version
        if self.op == ">":
            return v > self.version
        return v >= self.version


@dataclass(frozen=True)
class VersionRange:
    """Alternatives (or) of comparator sets (and); an empty set matches every release."""

    alternatives: tuple[tuple[Comparator, ...], ...]
    text: str = ""

    def matches(self, version: Version) -> bool:
        return any(_test_set(s, version) for s in self.alternatives)

    def matches_tag(self, tag: str) -> bool:
        version = parse_version(tag)
        return version is not None and self.matches(version)


def _test_set(comparators: tuple[Comparator, ...], v: Version) -> bool:
    if not all(c.test(v) for c in comparators):
        return False
    if not v.prerelease:
        return True
    return any(c.version.prerelease and c.version.release == v.release for c in comparators)


@dataclass(frozen=True)
class _Partial:
    """A version with parts left open: ``None`` for a missing or wildcard part."""

    major: int | None
    minor: int | None
    patch: int | None
    prerelease: tuple[str, ...] = ()

    def floor(self) -> Version:
        return Version(self.major or 0, self.minor or 0, self.patch or 0, self.prerelease)


def _part(text: str | None) -> int | None:
    return None if text is None or text in _WILDCARDS else int(text)


def _parse_partial(text: str, where: str) -> _Partial:
    m = _PARTIAL.match(text)
    if m is None:
        raise RangeError(f"not a version: {text!r} (in {where!r})")
    major, minor, patch = _part(m.group(1)), _part(m.group(2)), _part(m.group(3))
    if major is None and (minor is not None or patch is not None):
        raise RangeError(f"a wildcard part must not be followed by a number: {text!r}")
    if minor is None and patch is not None:
        raise RangeError(f"a wildcard part must not be followed by a number: {text!r}")
    try:
        pre = _prerelease(m.group(4))
    except ValueError as exc:
        raise RangeError(f"{exc} (in {where!r})") from None
    if pre and patch is None:
        raise RangeError(f"a pre-release needs a full version: {text!r}")
    return _Partial(major, minor, patch, pre)


def _ceiling(major: int, minor: int | None = None, patch: int | None = None) -> Version:
    """The exclusive upper bound just below the given release: ``<X.Y.Z-0``."""
    return Version(major, minor or 0, patch or 0, ("0",))


def _next_after(p: _Partial) -> Version:
    """The lowest release above every version ``p`` covers (its last given part bumped)."""
    assert p.major is not None
    if p.minor is None:
        return Version(p.major + 1, 0, 0)
    if p.patch is None:
        return Version(p.major, p.minor + 1, 0)
    return Version(p.major, p.minor, p.patch + 1)


def _below(v: Version) -> Version:
    """As an exclusive upper bound: below ``v`` and below its pre-releases too."""
    return Version(v.major, v.minor, v.patch, ("0",))


def _expand(op: str, p: _Partial) -> list[Comparator]:
    if p.major is None:  # "*", "x", ">=*": anything; "<*", ">*": nothing
        return [] if op in ("", "=", ">=", "<=", "^", "~", "~>") else [Comparator("<", _NOTHING)]
    full = p.minor is not None and p.patch is not None
    if op in ("", "="):
        if full:
            return [Comparator("=", p.floor())]
        return [Comparator(">=", p.floor()), Comparator("<", _below(_next_after(p)))]
    if op == ">=":
        return [Comparator(">=", p.floor())]
    if op == "<":
        return [Comparator("<", p.floor() if full else _ceiling(*_release_of(p)))]
    if op == ">":
        return [Comparator(">" if full else ">=", p.floor() if full else _next_after(p))]
    if op == "<=":
        return [Comparator("<=", p.floor())] if full else [Comparator("<", _below(_next_after(p)))]
    if op in ("~", "~>"):
        if p.minor is None:
            return [Comparator(">=", p.floor()), Comparator("<", _ceiling(p.major + 1))]
        return [Comparator(">=", p.floor()), Comparator("<", _ceiling(p.major, p.minor + 1))]
    assert op == "^"
    if p.major > 0 or p.minor is None:
        upper = _ceiling(p.major + 1)
    elif p.minor > 0 or p.patch is None:
        upper = _ceiling(0, p.minor + 1)
    else:
        upper = Version(0, 0, p.patch + 1, ("0",))
    return [Comparator(">=", p.floor()), Comparator("<", upper)]


def _release_of(p: _Partial) -> tuple[int, int | None, int | None]:
    assert p.major is not None
    return (p.major, p.minor, p.patch)


_NOTHING = Version(0, 0, 0, ("0",))  # "<0.0.0-0": no version is below it


def _parse_set(text: str) -> tuple[Comparator, ...]:
    text = text.strip()
    if text in ("", *_WILDCARDS):
        return ()
    hyphen = re.fullmatch(r"(\S+)\s+-\s+(\S+)", text)
    if hyphen:
        low = _parse_partial(hyphen.group(1), text)
        high = _parse_partial(hyphen.group(2), text)
        out = [] if low.major is None else [Comparator(">=", low.floor())]
        if high.major is not None:
            out += _expand("<=", high)
        return tuple(out)
    # "> = 1.2" is not a comparator: an operator sticks to its version (spaces allowed).
    tokens = re.findall(r"(?:<=|>=|<|>|=|\^|~>?)?\s*[^\s<>=^~]+", text)
    if "".join(tokens).replace(" ", "") != text.replace(" ", ""):
        raise RangeError(f"cannot read {text!r} as comparators")
    comparators: list[Comparator] = []
    for token in tokens:
        m = _COMPARATOR.match(token.strip())
        assert m is not None
        op, version = m.group(1) or "", m.group(2).strip()
        comparators += _expand(op, _parse_partial(version, token))
    return tuple(comparators)


def parse_range(text: str) -> VersionRange:
    """A range in node-semver's grammar; raises RangeError saying what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise RangeError("a semver range must not be empty (`*` matches every release)")
    if len(text) > 1000:
        raise RangeError("a semver range is at most 1000 characters")
    alternatives = tuple(_parse_set(part) for part in text.split("||"))
    return VersionRange(alternatives, text.strip())


def check_range(text: str) -> str:
    """``text`` if it is a valid range, else ValueError (for configuration fields)."""
    parse_range(text)
    return text
