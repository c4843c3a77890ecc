"""The one pattern grammar for repository names and tags, pure (no I/O).

Auth grants, retention policies and every filter to come (proxy, replication, webhooks,
immutable tags, quotas) take patterns in this grammar; docs/patterns.md is its reference.

- ``*`` matches any run of characters within one ``/``-separated segment;
- ``**`` as a whole segment matches across segments (the doublestar rule of Harbor's
  filters, bmatcuk/doublestar and gitignore): ``**/base`` matches ``base`` and
  ``a/b/base``, ``team/**/app`` matches ``team/app`` and ``team/x/y/app``, and ``team/**``
  everything below ``team/`` (not ``team`` itself). Inside a segment (``app**``) it is a
  plain ``*``;
- ``?`` matches one character other than ``/``;
- every other character is literal (``.``, ``[``, ``]`` and ``\\`` included).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

WILDCARDS = "*?"
DOUBLESTAR = "**"


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The regular expression that ``pattern`` stands for (anchored at both ends)."""
    segments = pattern.split("/")
    out: list[str] = []
    for i, segment in enumerate(segments):
        # A segment is preceded by "/", except the first, and except after a "**" that
        # already took its trailing "/" (it can match zero segments).
        sep = "/" if i > 0 and segments[i - 1] != DOUBLESTAR else ""
        if segment == DOUBLESTAR and i == len(segments) - 1:
            out.append(".*" if i == 0 else sep + ".+")  # everything below
        elif segment == DOUBLESTAR:
            out.append(sep + "(?:.*/)?")  # zero or more whole segments
        else:
            out.append(sep + _segment_regex(segment))
    return re.compile("".join(out), re.DOTALL)


def _segment_regex(segment: str) -> str:
    out: list[str] = []
    for char in segment:
        if char == "*":
            if not out or out[-1] != "[^/]*":  # "**" inside a segment is one "*"
                out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(char))
    return "".join(out)


def matches(pattern: str, name: str) -> bool:
    """Whether ``name`` (a repository name or a tag) matches ``pattern``."""
    return compile_pattern(pattern).fullmatch(name) is not None


def matches_any(patterns: Iterable[str], name: str) -> bool:
    return any(matches(p, name) for p in patterns)


def literal_prefix(pattern: str) -> str:
    """The part of ``pattern`` before its first wildcard: every name it matches starts
    with it, so a caller can narrow a listing (``team/`` for ``team/*``)."""
    for i, char in enumerate(pattern):
        if char in WILDCARDS:
            return pattern[:i]
    return pattern


def check_repository_pattern(pattern: str) -> str:
    """``pattern`` if it can match a repository name, else ValueError saying why."""
    if not pattern:
        raise ValueError("a pattern must not be empty (`**` matches every repository)")
    if "" in pattern.split("/"):
        raise ValueError(
            "a repository pattern has no empty segments: no leading, trailing or double `/`"
        )
    return pattern


def check_tag_pattern(pattern: str) -> str:
    """``pattern`` if it can match a tag, else ValueError saying why."""
    if not pattern:
        raise ValueError("a pattern must not be empty (`*` matches every tag)")
    if "/" in pattern:
        raise ValueError("a tag pattern cannot hold `/`: tags have none")
    return pattern
