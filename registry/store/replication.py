"""What replication keeps beside the data, per rule, so that any process can pick up
where another stopped (registry/replication/ owns the documents' format)::

    replication/<rule>/status/<writer>     what the rule's event deliveries (``events``) or
                                           full passes (``runs``) did last and in total
    replication/<rule>/failures/<key>      an artifact that could not be copied or deleted,
                                           and why; retried on the next event or pass
    replication/<rule>/uploads/<key>       a blob upload in flight: the target's session
                                           (URL and acknowledged offset) to resume from;
                                           dropped when not written for a day

Each document has one writer at a time: event deliveries run in the holder of the events
lease, full passes under the rule's own lease, so two status documents never race; a
failure or an upload is one object, written or deleted whole. Keys are hex SHA-256s of
what they describe.
"""

from __future__ import annotations

import asyncio

from registry.store import layout
from storage_backends import Driver, PathNotFoundError

_READ_CONCURRENCY = 16


class ReplicationState:
    def __init__(self, driver: Driver) -> None:
        self._driver = driver

    async def rules(self) -> list[str]:
        """Every rule with state in storage (configured now or not)."""
        names = await self._driver.list(layout.REPLICATION)
        out = []
        for name in names:
            try:
                out.append(layout.check_rule_name(name))
            except ValueError:
                continue
        return out

    # ------------------------------------------------------------------ status

    async def read_status(self, rule: str, writer: str) -> bytes | None:
        return await self._get(layout.replication_status(rule, writer))

    async def write_status(self, rule: str, writer: str, data: bytes) -> None:
        await self._driver.put(layout.replication_status(rule, writer), data)

    # ------------------------------------------------------------------ failures

    async def failures(self, rule: str) -> dict[str, bytes]:
        """Every failure of ``rule``, by key."""
        keys = [k for k in await self._driver.list(layout.replication_failures(rule)) if _key(k)]
        found: dict[str, bytes] = {}
        todo = iter(keys)

        async def worker() -> None:
            for key in todo:
                raw = await self._get(layout.replication_failure(rule, key))
                if raw is not None:
                    found[key] = raw

        await asyncio.gather(*(worker() for _ in range(min(_READ_CONCURRENCY, len(keys)))))
        return {k: found[k] for k in keys if k in found}

    async def write_failure(self, rule: str, key: str, data: bytes) -> None:
        await self._driver.put(layout.replication_failure(rule, key), data)

    async def delete_failure(self, rule: str, key: str) -> None:
        await self._driver.delete(layout.replication_failure(rule, key))

    # ------------------------------------------------------------------ uploads

    async def read_upload(self, rule: str, key: str) -> bytes | None:
        return await self._get(layout.replication_upload(rule, key))

    async def write_upload(self, rule: str, key: str, data: bytes) -> None:
        await self._driver.put(layout.replication_upload(rule, key), data)

    async def delete_upload(self, rule: str, key: str) -> None:
        await self._driver.delete(layout.replication_upload(rule, key))

    async def uploads(self, rule: str) -> list[str]:
        return [k for k in await self._driver.list(layout.replication_uploads(rule)) if _key(k)]

    async def upload_written(self, rule: str, key: str) -> float | None:
        """When the upload's document was last written (storage time), None if gone."""
        try:
            return (await self._driver.stat(layout.replication_upload(rule, key))).modified
        except PathNotFoundError:
            return None

    async def _get(self, path: str) -> bytes | None:
        try:
            return await self._driver.get(path)
        except PathNotFoundError:
            return None


def _key(name: str) -> bool:
    try:
        layout.check_replication_key(name)
    except ValueError:
        return False
    return True
