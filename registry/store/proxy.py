"""What the pull-through cache (registry/proxy) keeps beside the repositories it fills:
when each cached tag was last checked upstream, roughly when each cached manifest was
last pulled, the upstream's referrers lists, and which process fetches a blob now.

Times the cache compares with a process's clock (tag checks, referrers lists, fill
heartbeats) are written into the records by the process that acts; the last-pulled
time is the record's modification time, in the storage's clock, which the eviction
compares with the storage clock.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from registry.errors import RegistryError
from registry.reference import Digest, parse_digest
from registry.store import layout
from storage_backends import Driver, PathNotFoundError


@dataclass(frozen=True)
class TagCheck:
    """The upstream named ``digest`` for the tag when it was checked at ``checked_at``."""

    digest: Digest
    checked_at: float  # seconds since the epoch, the checking process's clock


@dataclass(frozen=True)
class ReferrersList:
    descriptors: list[dict[str, Any]]
    fetched_at: float  # seconds since the epoch, the fetching process's clock


@dataclass(frozen=True)
class FillClaim:
    """A process fetching a blob now: it writes ``spool`` (a local file other processes
    of its host may follow) and rewrites the claim while it works (``heartbeat``)."""

    owner: str
    repository: str
    heartbeat: float  # seconds since the epoch, the owner's clock
    spool: str | None = None
    size: int | None = None

    def dump(self) -> bytes:
        return json.dumps(
            {
                "owner": self.owner,
                "repository": self.repository,
                "heartbeat": self.heartbeat,
                "spool": self.spool,
                "size": self.size,
            }
        ).encode()


def _load(raw: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


class ProxyRecords:
    def __init__(self, driver: Driver) -> None:
        self._driver = driver

    async def _get(self, path: str) -> dict[str, Any] | None:
        try:
            return _load(await self._driver.get(path))
        except PathNotFoundError:
            return None

    async def _delete(self, path: str) -> None:
        # One file: delete_many is one request on S3 where delete (a prefix) is three.
        await self._driver.delete_many([path])

    # ------------------------------------------------------------------ tag checks

    async def tag_check(self, name: str, tag: str) -> TagCheck | None:
        doc = await self._get(layout.proxy_tag(name, tag))
        if doc is None:
            return None
        try:
            return TagCheck(parse_digest(str(doc["digest"])), float(doc["at"]))
        except (KeyError, TypeError, ValueError, RegistryError):
            return None  # torn or written by hand: as if never checked

    async def record_tag_check(self, name: str, tag: str, digest: Digest, at: float) -> None:
        doc = {"digest": str(digest), "at": at}
        await self._driver.put(layout.proxy_tag(name, tag), json.dumps(doc).encode())

    async def forget_tag_check(self, name: str, tag: str) -> None:
        await self._delete(layout.proxy_tag(name, tag))

    # ------------------------------------------------------------------ last pulled

    async def mark_pulled(self, name: str, digest: Digest) -> None:
        await self._driver.put(layout.proxy_pulled(name, digest), b"")

    async def pulled(self, name: str) -> dict[Digest, float]:
        """When each manifest of ``name`` was last marked pulled (storage time)."""
        folder = layout.proxy_pulled_dir(name)
        digests = layout.listed_digests(await self._driver.list(folder, recursive=True))

        async def when(digest: Digest) -> float | None:
            try:
                return (await self._driver.stat(layout.proxy_pulled(name, digest))).modified
            except PathNotFoundError:
                return None

        times = await asyncio.gather(*(when(d) for d in sorted(digests)))
        return {d: t for d, t in zip(sorted(digests), times, strict=True) if t is not None}

    async def forget_pulled(self, name: str, digest: Digest) -> None:
        await self._delete(layout.proxy_pulled(name, digest))

    # ------------------------------------------------------------------ referrers

    async def referrers(self, name: str, subject: Digest) -> ReferrersList | None:
        doc = await self._get(layout.proxy_referrers(name, subject))
        if doc is None:
            return None
        descriptors, at = doc.get("manifests"), doc.get("at")
        if not isinstance(descriptors, list) or not isinstance(at, int | float):
            return None
        return ReferrersList([d for d in descriptors if isinstance(d, dict)], float(at))

    async def save_referrers(
        self, name: str, subject: Digest, descriptors: list[dict[str, Any]], at: float
    ) -> None:
        doc = {"at": at, "manifests": descriptors}
        await self._driver.put(layout.proxy_referrers(name, subject), json.dumps(doc).encode())

    async def forget_referrers(self, name: str, subject: Digest) -> None:
        await self._delete(layout.proxy_referrers(name, subject))

    # ------------------------------------------------------------------ fills

    async def fill_claim(self, digest: Digest) -> FillClaim | None:
        doc = await self._get(layout.proxy_fill(digest))
        if doc is None:
            return None
        try:
            size = doc.get("size")
            spool = doc.get("spool")
            return FillClaim(
                str(doc["owner"]),
                str(doc["repository"]),
                float(doc["heartbeat"]),
                spool if isinstance(spool, str) else None,
                size if isinstance(size, int) and not isinstance(size, bool) else None,
            )
        except (KeyError, TypeError, ValueError):
            return None

    async def write_fill_claim(self, digest: Digest, claim: FillClaim) -> None:
        await self._driver.put(layout.proxy_fill(digest), claim.dump())

    async def release_fill_claim(self, digest: Digest, owner: str) -> None:
        """Remove the claim if it is still ``owner``'s."""
        current = await self.fill_claim(digest)
        if current is not None and current.owner == owner:
            await self._delete(layout.proxy_fill(digest))
