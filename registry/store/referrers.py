"""The referrers index: per subject, one small file per manifest that refers to it.

Written at manifest PUT and removed at manifest DELETE, so the referrers API reads only
the entries of one subject and never scans a repository.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from registry.reference import Digest
from registry.store import layout
from storage_backends import Driver, PathNotFoundError


class ReferrersIndex:
    def __init__(self, driver: Driver) -> None:
        self._driver = driver

    async def add(
        self, name: str, subject: Digest, referrer: Digest, descriptor: dict[str, Any]
    ) -> None:
        await self._driver.put(
            layout.referrer(name, subject, referrer), json.dumps(descriptor).encode()
        )

    async def remove(self, name: str, subject: Digest, referrer: Digest) -> None:
        await self._driver.delete(layout.referrer(name, subject, referrer))

    async def entries(self, name: str) -> dict[Digest, set[Digest]]:
        """Every entry of the index of ``name``: subject -> its referrers."""
        found: dict[Digest, set[Digest]] = {}
        for entry in await self._driver.list(layout.referrers_index(name), recursive=True):
            subject_path, _, key = entry.rpartition("/")
            subject, referrer = layout.listed_digest(subject_path), layout.listed_digest(key)
            if subject is not None and referrer is not None:
                found.setdefault(subject, set()).add(referrer)
        return found

    async def page(
        self, name: str, subject: Digest, last: str | None, limit: int
    ) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
        """Up to ``limit`` (entry key, descriptor) pairs after ``last``; and whether more follow."""
        keys = await self._driver.list(
            layout.referrers(name, subject), start_after=last, limit=limit + 1
        )
        more = len(keys) > limit
        keys = keys[:limit]

        async def load(key: str) -> dict[str, Any] | None:
            try:
                raw = await self._driver.get(layout.referrer_entry(name, subject, key))
            except PathNotFoundError:
                return None  # removed while we listed
            loaded: dict[str, Any] = json.loads(raw)
            return loaded

        loaded = await asyncio.gather(*(load(k) for k in keys))
        return [(k, d) for k, d in zip(keys, loaded, strict=True) if d is not None], more
