"""The read-only maintenance flag: one object in storage that every process sharing it
reads (registry/maintenance.py says why it lives there)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from registry.store import layout
from storage_backends import Driver, PathNotFoundError


@dataclass(frozen=True)
class MaintenanceFlag:
    """The stored flag: present means read-only."""

    since: float
    reason: str = ""

    def dump(self) -> bytes:
        return json.dumps({"since": self.since, "reason": self.reason}).encode()

    @classmethod
    def load(cls, raw: bytes) -> MaintenanceFlag:
        try:
            doc = json.loads(raw)
            return cls(float(doc.get("since", 0.0)), str(doc.get("reason", "")))
        except (ValueError, TypeError, AttributeError):
            # A flag someone wrote by hand still means read-only.
            return cls(0.0, "")


class ReadOnlyFlag:
    def __init__(self, driver: Driver) -> None:
        self._driver = driver

    async def read(self) -> MaintenanceFlag | None:
        try:
            return MaintenanceFlag.load(await self._driver.get(layout.readonly_flag()))
        except PathNotFoundError:
            return None

    async def set(self, reason: str = "") -> MaintenanceFlag:
        flag = MaintenanceFlag(time.time(), reason)
        await self._driver.put(layout.readonly_flag(), flag.dump())
        return flag

    async def clear(self) -> None:
        await self._driver.delete(layout.readonly_flag())
