"""Intents to create a tag, kept in storage so that two pushes racing to create the same
immutable tag with different digests see each other (registry/policy/immutable.py).

::

    tag-intents/<name>/_tags/<tag>/<ms>-<alg>-<hex>     empty; <ms>: when it was written

The driver has no create-if-absent, and none is needed: a push writes its intent
*before* it lists the intents of the tag (as login attempts do, store/login_attempts.py).
Of two pushes racing, each writes then lists, so at least one of them lists after the
other's write and sees it. An intent counts for ``window`` seconds: the push that wrote
it writes its tag within that (within seconds: the PUT's last few writes), or has
failed; a push that is refused withdraws its intent at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.errors import RegistryError
from registry.reference import Digest, parse_digest
from registry.store import layout
from registry.store.clock import Clock
from storage_backends import Driver

_MS_DIGITS = 15  # zero-padded milliseconds since the epoch: names sort by time
DEFAULT_WINDOW = 60.0


@dataclass(frozen=True)
class TagIntent:
    written_at: float
    digest: Digest


def _record(moment: float, digest: Digest) -> str:
    return f"{int(moment * 1000):0{_MS_DIGITS}d}-{digest.algorithm}-{digest.hex}"


def _parse(record: str) -> TagIntent | None:
    stamp, _, rest = record.partition("-")
    if len(stamp) != _MS_DIGITS or not stamp.isdigit():
        return None
    try:
        return TagIntent(int(stamp) / 1000, parse_digest(rest.replace("-", ":", 1)))
    except RegistryError:
        return None


class TagIntents:
    def __init__(self, driver: Driver, clock: Clock, window: float = DEFAULT_WINDOW) -> None:
        self._driver = driver
        self._clock = clock
        self.window = window

    async def declare(self, name: str, tag: str, digest: Digest) -> tuple[str, list[TagIntent]]:
        """Write this push's intent to point ``name:tag`` at ``digest``, then list: its
        record (to ``withdraw`` it) and the intents of other digests written within the
        window (a racing push)."""
        now = self._clock.time()
        record = _record(now, digest)
        await self._driver.put(layout.tag_intent(name, tag, record), b"")
        found = [_parse(r) for r in await self._driver.list(layout.tag_intents(name, tag))]
        racing = [
            i
            for i in found
            if i is not None and i.digest != digest and i.written_at > now - self.window
        ]
        return record, racing

    async def withdraw(self, name: str, tag: str, record: str) -> None:
        """The push will not write the tag (refused): its intent must not hold up others."""
        await self._driver.delete(layout.tag_intent(name, tag, record))

    async def purge(self) -> int:
        """Delete the intents older than twice the window; returns how many."""
        cutoff = self._clock.time() - 2 * self.window
        old = []
        for path in await self._driver.list(layout.TAG_INTENTS, recursive=True):
            intent = _parse(path.rsplit("/", 1)[-1])
            if intent is not None and intent.written_at < cutoff:
                old.append(f"{layout.TAG_INTENTS}/{path}")
        if old:
            await self._driver.delete_many(old)
        return len(old)
