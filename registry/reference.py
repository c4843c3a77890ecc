"""The grammar of repository names, tags, digests and HTTP ranges (pure, no I/O).

Everything a client sends is checked here before it becomes part of a storage path.
Grammar from distribution-spec "Pulling manifests" and image-spec "Digests".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry import errors
from registry.errors import RegistryError

NAME_MAX = 255
# Each path component of a name becomes a file name, and the last one also a marker file
# ``<component>!`` (store/layout.py): filesystems allow 255 bytes per file name.
NAME_COMPONENT_MAX = 254
NAME_RE = re.compile(
    r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$"
)
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")

# Registered algorithms and the exact length of their hex encodings.
ALGORITHMS = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")


def is_valid_name(name: str) -> bool:
    return (
        len(name) <= NAME_MAX
        and NAME_RE.match(name) is not None
        and all(len(component) <= NAME_COMPONENT_MAX for component in name.split("/"))
    )


def check_name(name: str) -> str:
    if not is_valid_name(name):
        raise RegistryError(errors.NAME_INVALID, f"invalid repository name: {name[:300]!r}")
    return name


def is_valid_tag(tag: str) -> bool:
    return TAG_RE.match(tag) is not None


def check_tag(tag: str) -> str:
    if not is_valid_tag(tag):
        raise RegistryError(errors.TAG_INVALID, f"invalid tag: {tag[:200]!r}")
    return tag


_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, order=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def parse_digest(value: str) -> Digest:
    """A digest of a registered algorithm with a lowercase hex encoding of the right length.

    Unknown algorithms are refused with DIGEST_INVALID (the spec lets a registry refuse
    what it cannot verify)."""
    m = _DIGEST_RE.match(value)
    if not m:
        raise RegistryError(errors.DIGEST_INVALID, f"invalid digest: {value[:200]!r}")
    algorithm, encoded = m.group(1), m.group(2)
    length = ALGORITHMS.get(algorithm)
    if length is None:
        raise RegistryError(errors.DIGEST_INVALID, f"unsupported digest algorithm: {algorithm!r}")
    if len(encoded) != length or not _HEX.issuperset(encoded):
        raise RegistryError(errors.DIGEST_INVALID, f"invalid {algorithm} digest: {value[:200]!r}")
    return Digest(algorithm, encoded)


def is_digest_reference(reference: str) -> bool:
    """A manifest reference is a digest when it has a colon (tags cannot)."""
    return ":" in reference


# ---------------------------------------------------------------------------- ranges


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


_CONTENT_RANGE_RE = re.compile(r"^(?:bytes[ =])?(\d{1,19})-(\d{1,19})(?:/(?:\d{1,19}|\*))?$")
_RANGE_RE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")


def parse_content_range(value: str) -> ByteRange:
    """The ``Content-Range`` of an upload PATCH: ``<start>-<end>`` (inclusive).

    Docker and the OCI conformance suite send the bare form; ``bytes a-b/n`` is also
    accepted. Raises BLOB_UPLOAD_RANGE_INVALID (416) when malformed or reversed."""
    m = _CONTENT_RANGE_RE.match(value.strip())
    start, end = (int(m.group(1)), int(m.group(2))) if m else (0, -1)
    if end < start:
        raise RegistryError(
            errors.BLOB_UPLOAD_RANGE_INVALID, f"invalid Content-Range: {value[:100]!r}"
        )
    return ByteRange(start, end)


def parse_range(value: str, size: int) -> ByteRange | None:
    """A single-range ``Range`` header of a blob GET against a blob of ``size`` bytes.

    Returns None when the header should be ignored (syntactically not a single byte
    range: RFC 9110 lets a server then send the whole content). Raises RANGE_INVALID
    (416) when it is well-formed but cannot be satisfied."""
    m = _RANGE_RE.match(value.strip())
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None
    first, last = m.group(1), m.group(2)
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if last != "" and int(last) < start:
        return None
    if start >= size:
        raise _unsatisfiable(size)
    return ByteRange(start, end)


def _unsatisfiable(size: int) -> RegistryError:
    return RegistryError(
        errors.RANGE_INVALID,
        "requested range not satisfiable",
        headers={"Content-Range": f"bytes */{size}"},
    )
