"""Tags: one small file per tag naming the manifest digest it points at; its
modification time is when the tag was last pushed.

Next to them, ``tags.version`` holds a random token that every writer replaces *after*
its change to the repository's tags has landed (a tag put or deleted here, or deleted by
the collector: ``collected``). A page of tags listed after reading the token stays
right for as long as the token reads the same, so a process may serve it again for one
small read instead of a listing (on S3: a GET instead of a ListObjectsV2, a quarter of
RGW's CPU and about half of ours). Any change that completed before the token was
read shows in the page; one still in flight has not been answered yet. Only a writer
killed between its two writes leaves a page stale, for the read cache's ttl at most
(store/read_cache.py).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence

from registry import errors
from registry.errors import RegistryError
from registry.reference import Digest, is_valid_tag, parse_digest
from registry.store import layout
from registry.store.clock import SYSTEM_CLOCK
from registry.store.objects import StoredObject, Tag
from registry.store.read_cache import ReadCache
from storage_backends import Driver, PathNotFoundError

log = logging.getLogger("registry.store")


class TagStore:
    def __init__(self, driver: Driver, cache: ReadCache | None = None) -> None:
        self._driver = driver
        self._cache = ReadCache(SYSTEM_CLOCK) if cache is None else cache

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
        """Up to ``limit`` tags after ``last``, in lexical order: listed, or as listed
        before under the tags version that still holds (with the read cache on)."""
        cache = self._cache
        version = None
        if cache.enabled:
            started = cache.started()
            version = await self._version(name)
            if version is not None:
                kept = cache.tag_page(name, version, last, limit)
                if kept is not None:
                    return kept
        tags = await self._driver.list(layout.tags(name), start_after=last, limit=limit)
        if version is not None:
            cache.keep_tag_page(name, version, last, limit, tags, started)
        return tags

    async def _version(self, name: str) -> bytes | None:
        try:
            return await self._driver.get(layout.tags_version(name))
        except PathNotFoundError:
            return None  # no writer has written one yet: nothing can be trusted

    async def changed(self, name: str) -> None:
        """After a change to ``name``'s tags has landed (or may have): pages listed
        before it are no longer served."""
        await self._driver.put(layout.tags_version(name), secrets.token_hex(16).encode())

    async def collected(self, objects: Sequence[StoredObject]) -> None:
        """After the collector's deletes of ``objects`` landed (store/claims.py)."""
        for name in sorted({o.repository for o in objects if isinstance(o, Tag)}):
            await self.changed(name)

    async def pointing_at(self, name: str, digest: Digest) -> list[str]:
        # One at a time: a repository may have thousands of tags.
        return [t for t in await self.names(name) if await self.read(name, t) == digest]

    async def put(self, name: str, tag: str, digest: Digest) -> None:
        try:
            await self._driver.put(layout.tag(name, tag), str(digest).encode())
        finally:
            await self.changed(name)

    async def delete(self, name: str, tag: str) -> None:
        try:
            await self._driver.delete(layout.tag(name, tag))
        finally:
            await self.changed(name)
