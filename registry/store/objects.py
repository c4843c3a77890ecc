"""The objects a repository is stored as, named in registry terms.

Code outside the store (the garbage collector, and every feature to come) names what it
reads, times or deletes with these; ``layout.path_of`` alone turns them into paths.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.reference import Digest


@dataclass(frozen=True, order=True)
class Tag:
    repository: str
    name: str

    def __str__(self) -> str:
        return f"{self.repository}:{self.name}"


@dataclass(frozen=True, order=True)
class Revision:
    """A manifest's record in a repository: the manifest belongs there."""

    repository: str
    digest: Digest

    def __str__(self) -> str:
        return f"{self.repository}@{self.digest}"


@dataclass(frozen=True, order=True)
class Link:
    """A blob linked into a repository: visible there."""

    repository: str
    digest: Digest


@dataclass(frozen=True, order=True)
class ReferrerEntry:
    """``referrer``'s entry in the referrers index of ``subject``."""

    repository: str
    subject: Digest
    referrer: Digest


@dataclass(frozen=True, order=True)
class BlobData:
    """A blob's bytes, stored once for every repository."""

    digest: Digest


@dataclass(frozen=True, order=True)
class BlobClaim:
    """The mark a push leaves on a digest it relies on (store/claims.py)."""

    digest: Digest


StoredObject = Tag | Revision | Link | ReferrerEntry | BlobData | BlobClaim


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    modified: float  # the storage's clock, seconds since the epoch
