"""The storage's clock: the collector compares modification times the storage wrote, so
it reads "now" the same way instead of trusting the local clock of whichever host runs it.
"""

from __future__ import annotations

from registry.store import layout
from storage_backends import Driver

# Modification times on S3 have a resolution of one second (a time is truncated, so an
# object may look up to a second older than it is); every cutoff the collector computes
# is moved back by this much so that nothing looks older than it is.
CLOCK_RESOLUTION = 1.0


async def storage_now(driver: Driver) -> float:
    """The storage's current time: write a probe and read back its modification time."""
    await driver.put(layout.gc_clock(), b"")
    return (await driver.stat(layout.gc_clock())).modified
