"""The grammar of the response headers a registry client reads (pure, no I/O): auth
challenges, pagination links, Retry-After, upload progress and Docker Hub's rate limits.

Upstreams are not trusted: every parser here accepts any string and answers ``None`` or
an empty result for what it cannot read, never an exception.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BARE_VALUE = re.compile(r"[^,\s]*")
_TOKEN68 = re.compile(r"[ \t]+[A-Za-z0-9._~+/-]+=*[ \t]*(?=,|$)")


def _skip_space(value: str, i: int) -> int:
    while i < len(value) and value[i] in " \t":
        i += 1
    return i


@dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header (RFC 9110 section 11.6.1)."""

    scheme: str  # lowercase: "bearer", "basic", ...
    params: dict[str, str] = field(default_factory=dict)  # keys lowercase

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes a Bearer challenge names (space-separated in one parameter)."""
        return tuple(self.params.get("scope", "").split())

    @property
    def error(self) -> str | None:
        return self.params.get("error")


def _quoted(value: str, i: int) -> tuple[str, int]:
    """A quoted-string starting at ``value[i] == '"'``; returns it and the index after it."""
    out: list[str] = []
    i += 1
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            out.append(value[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    return "".join(out), i  # unterminated: take what there is


def parse_challenges(header: str) -> list[Challenge]:
    """All challenges of a ``WWW-Authenticate`` value, e.g.
    ``Bearer realm="https://auth.example/token",service="reg",scope="repository:a:pull"``.

    Several challenges may share one header, separated by commas like their parameters:
    a token not followed by ``=`` starts a new challenge."""
    challenges: list[tuple[str, dict[str, str]]] = []
    i, n = 0, len(header)
    while i < n:
        if header[i] in ", \t":
            i += 1
            continue
        m = _TOKEN.match(header, i)
        if m is None:
            i += 1  # garbage: skip a character
            continue
        word, i = m.group(0), m.end()
        j = _skip_space(header, i)
        if j < n and header[j] == "=" and challenges:
            j = _skip_space(header, j + 1)
            if j < n and header[j] == '"':
                value, i = _quoted(header, j)
            else:
                bare = _BARE_VALUE.match(header, j)
                value, i = (bare.group(0), bare.end()) if bare else ("", j)
            challenges[-1][1][word.lower()] = value
        elif j < n and header[j] == "=":
            i = j + 1  # a parameter before any scheme: ignore it
        else:
            challenges.append((word.lower(), {}))
            # A token68 credential after the scheme ("Negotiate abc==") is not a parameter.
            t = _TOKEN68.match(header, i)
            if t:
                i = t.end()
    return [Challenge(scheme, params) for scheme, params in challenges]


_LINK = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]*)*)")
_REL = re.compile(r';\s*rel\s*=\s*"?([^";,]*)"?', re.IGNORECASE)


def next_link(header: str | None) -> str | None:
    """The ``rel="next"`` target of a ``Link`` header (RFC 8288), as written (may be
    relative)."""
    if not header:
        return None
    for m in _LINK.finditer(header):
        for rel in _REL.findall(m.group(2)):
            if "next" in rel.lower().split():
                return m.group(1).strip()
    return None


def retry_after(header: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if header is None:
        return None
    value = header.strip()
    if value.isascii() and value.isdigit():
        return float(min(int(value), 7 * 86400))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, min(when.timestamp() - current, 7 * 86400.0))


_RANGE = re.compile(r"^\s*(?:bytes[ =])?\s*(\d{1,19})-(\d{1,19})\s*$")


def upload_offset(header: str | None) -> int | None:
    """The next byte an upload session expects, from its ``Range: 0-<last>`` header.

    ``0-0`` is read as an empty session: distribution and this registry both send it for
    zero bytes (and it is also what one stored byte would look like; a resume that then
    disagrees with the server is answered 416 and re-asked)."""
    if header is None:
        return None
    m = _RANGE.match(header)
    if m is None:
        return None
    start, last = int(m.group(1)), int(m.group(2))
    if start != 0 or last < start:
        return None
    return 0 if last == 0 else last + 1


_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d{1,19})-(\d{1,19})/(\d{1,19}|\*)\s*$")


def content_range(header: str | None) -> tuple[int, int, int | None] | None:
    """``(start, last, total)`` of a 206 answer's ``Content-Range: bytes a-b/n``."""
    if header is None:
        return None
    m = _CONTENT_RANGE.match(header)
    if m is None:
        return None
    start, last = int(m.group(1)), int(m.group(2))
    if last < start:
        return None
    total = None if m.group(3) == "*" else int(m.group(3))
    return start, last, total


@dataclass(frozen=True)
class RateLimit:
    """Docker Hub's pull allowance: ``ratelimit-limit: 100;w=21600`` and
    ``ratelimit-remaining: 76;w=21600`` (pulls per window of ``window`` seconds)."""

    limit: int | None
    remaining: int | None
    window: int | None


_QUOTA = re.compile(r"^\s*(\d{1,12})\s*(?:;\s*w\s*=\s*(\d{1,12}))?")


def _quota(value: str | None) -> tuple[int | None, int | None]:
    if value is None:
        return None, None
    m = _QUOTA.match(value)
    if m is None:
        return None, None
    return int(m.group(1)), int(m.group(2)) if m.group(2) else None


def rate_limit(limit: str | None, remaining: str | None) -> RateLimit | None:
    """The rate limit from the two headers' values, or None when neither is readable."""
    total, w1 = _quota(limit)
    left, w2 = _quota(remaining)
    if total is None and left is None:
        return None
    return RateLimit(total, left, w1 if w1 is not None else w2)
