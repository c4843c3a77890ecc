"""Tags: one small file per tag naming the manifest digest it points at; its
modification time is when the tag was last pushed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from registry import errors
from registry.errors import RegistryError
from registry.reference import Digest, is_valid_tag, parse_digest
from registry.store import layout
from storage_backends import Driver, PathNotFoundError

log = logging.getLogger("registry.store")


class TagStore:
    def __init__(self, driver: Driver) -> None:
        self._driver = driver

    async def read(self, name: str, tag: str) -> Digest | None:
        """What the tag points at; None when there is no such tag or it does not hold a
        digest (damage: logged)."""
        try:
            raw = await self._driver.get(layout.tag(name, tag))
        except PathNotFoundError:
            return None
        try:
            return parse_digest(raw.decode())
        except (RegistryError, UnicodeDecodeError):
            log.warning("tag %s:%s does not hold a digest", name, tag)
            return None

    async def target(self, name: str, tag: str) -> Digest:
        """What the tag points at. A string that cannot be a tag is not stored either:
        reads answer MANIFEST_UNKNOWN (404) for it, as the conformance suite expects;
        only writes answer TAG_INVALID."""
        digest = await self.read(name, tag) if is_valid_tag(tag) else None
        if digest is None:
            raise RegistryError(
                errors.MANIFEST_UNKNOWN,
                f"manifest tagged {tag[:200]!r} is not in {name!r}",
                detail={"tag": tag[:200]},
            )
        return digest

    async def targets(self, name: str, tags: Sequence[str]) -> list[Digest | None]:
        return list(await asyncio.gather(*(self.read(name, t) for t in tags)))

    async def names(self, name: str) -> list[str]:
        """Every tag of ``name``, in lexical order."""
        return [t for t in await self._driver.list(layout.tags(name)) if is_valid_tag(t)]

    async def page(self, name: str, last: str | None, limit: int) -> list[str]:
        """Up to ``limit`` tags after ``last``, in lexical order."""
        return await self._driver.list(layout.tags(name), start_after=last, limit=limit)

    async def pointing_at(self, name: str, digest: Digest) -> list[str]:
        # One at a time: a repository may have thousands of tags.
        return [t for t in await self.names(name) if await self.read(name, t) == digest]

    async def put(self, name: str, tag: str, digest: Digest) -> None:
        await self._driver.put(layout.tag(name, tag), str(digest).encode())

    async def delete(self, name: str, tag: str) -> None:
        await self._driver.delete(layout.tag(name, tag))
