"""The keys that sign the web UI's session cookies, kept in storage.

Processes are stateless: a cookie one worker or replica issued must be accepted by all
the others, so the secret cannot live in a process, and deriving it from configured key
material would tie the UI to one auth mode (only token mode has a key file). Storage is
what every process already shares, in every mode.

No key is ever overwritten, so no process can lose the key it signs with: a process that
finds none writes one of its own under a random id, and every process signs with the
first key in id order -- they converge on one. A cookie names its key's id; a process
that does not know the id lists the keys again (at most once a second, so a flood of
forged ids costs one listing a second), and every process lists them again once a
minute anyway. Whoever can read the storage can forge a session -- and could already
change every image in it. Deleting ``ui/session-keys/`` ends every session within a
minute.
"""

from __future__ import annotations

import re
import secrets

from registry.store import layout
from registry.store.clock import Clock
from storage_backends import Driver, PathNotFoundError

KEY_BYTES = 32
RELIST_AFTER = 1.0  # seconds between listings prompted by unknown ids
REFRESH_AFTER = 60.0  # seconds a listing is trusted: deleted keys stop working by then
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")


def is_key_id(text: str) -> bool:
    return _KEY_ID.match(text) is not None


class SessionKeys:
    def __init__(self, driver: Driver, clock: Clock) -> None:
        self._driver = driver
        self._clock = clock
        self._keys: dict[str, bytes] = {}
        self._listed_at = float("-inf")

    async def signing_key(self) -> tuple[str, bytes]:
        """``(id, key)`` to sign new cookies with; written on first use."""
        if not self._keys or self._age() >= REFRESH_AFTER:
            await self._load()
        if not self._keys:
            key_id = secrets.token_hex(8)
            await self._driver.put(layout.session_key(key_id), secrets.token_bytes(KEY_BYTES))
            await self._load()
        if not self._keys:
            raise RuntimeError("the session key just written cannot be read back")
        key_id = min(self._keys)
        return key_id, self._keys[key_id]

    async def key(self, key_id: str) -> bytes | None:
        """The key with this id, or None when there is none (a forged or ended cookie)."""
        if not is_key_id(key_id):
            return None
        age = self._age()
        if age >= REFRESH_AFTER or (key_id not in self._keys and age >= RELIST_AFTER):
            await self._load()
        return self._keys.get(key_id)

    def _age(self) -> float:
        return self._clock.monotonic() - self._listed_at

    async def _load(self) -> None:
        self._listed_at = self._clock.monotonic()
        keys: dict[str, bytes] = {}
        for key_id in await self._driver.list(layout.session_keys()):
            if not is_key_id(key_id):
                continue
            try:
                raw = await self._driver.get(layout.session_key(key_id))
            except PathNotFoundError:
                continue
            if len(raw) == KEY_BYTES:
                keys[key_id] = raw
        self._keys = keys
