"""When each repository was last pushed to, for every repository in one listing.

The web UI sorts repositories by their last push. Reading it from the tags (their
modification times) would cost a request per tag of every repository on each page view,
so the time is kept in the *name* of one empty marker per repository,
``pushed/<name>!/<ms>``: a recursive listing of ``pushed/`` gives every repository's
last push, on every driver (S3 lists a thousand keys per request).

``PushTimes`` is a change listener: when a manifest push has passed its checks it writes
the repository's new marker and removes the one before, which this process remembers
(or else finds with a listing of the repository's own markers, keeping newer ones).
So while several processes push to one repository it has at most one marker per
process; readers take the newest. Nothing decides on these times -- they
are for display and ordering -- so a push that fails after its checks (a later listener
refuses it, the process dies) may count as a push; and a repository last pushed before
the listener was wired (the UI off, an older version) has no time until its next push.
"""

from __future__ import annotations

from collections import OrderedDict

from registry.store import layout
from registry.store.changes import Change, ManifestPushed
from registry.store.clock import Clock
from storage_backends import Driver

# Repositories whose current marker this process remembers (least recently pushed out).
REMEMBERED = 10_000


class PushTimes:
    """The last-push marker of every repository (store/layout.py: ``pushed/``)."""

    def __init__(self, driver: Driver, clock: Clock, remembered: int = REMEMBERED) -> None:
        self._driver = driver
        self._clock = clock
        self._remembered = remembered
        self._written: OrderedDict[str, str] = OrderedDict()  # name -> its current marker

    async def before(self, change: Change) -> None:
        """The change listener: a manifest push is a push to its repository."""
        if isinstance(change, ManifestPushed):
            await self.record(change.repository)

    async def record(self, name: str, at: float | None = None) -> None:
        """``name`` was pushed to at ``at`` (seconds; the process clock by default)."""
        when = self._clock.time() if at is None else at
        marker = layout.pushed_marker(name, int(when * 1000))
        # Remembered before the first await, so that a concurrent push of the same
        # repository in this process removes this marker rather than leave it behind.
        previous = self._written.get(name)
        self._written[name] = marker
        self._written.move_to_end(name)
        while len(self._written) > self._remembered:
            self._written.popitem(last=False)
        await self._driver.put(marker, b"")
        if previous is not None:
            stale = [previous] if previous != marker else []
        else:
            # Older markers only: a newer one is another process's push that just landed.
            stale = [m for m in await self._markers(name) if m < marker]
        if stale:
            await self._driver.delete_many(stale)

    async def _markers(self, name: str) -> list[str]:
        folder = layout.pushed_folder(name)
        # A few: more than one only after concurrent pushes from several processes.
        return [f"{folder}/{m}" for m in await self._driver.list(folder, limit=16)]

    async def all(self) -> dict[str, float]:
        """Every repository's last push (seconds since the epoch) that a marker records."""
        out: dict[str, float] = {}
        for relative in await self._driver.list(layout.pushed_markers(), recursive=True):
            entry = layout.pushed_entry(relative)
            if entry is not None:
                name, ms = entry
                out[name] = max(out.get(name, 0.0), ms / 1000)
        return out
