"""glibc's allocator, as the drivers tune it for their transfers (each says why where it
calls): the options of ``mallopt`` and ``malloc_trim``. Elsewhere than glibc, no-ops."""

from __future__ import annotations

import ctypes
import functools
from typing import Any

# mallopt's parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


@functools.cache
def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def set_option(param: int, value: int) -> None:
    """``mallopt(param, value)``: process-wide."""
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is not None:
        mallopt(param, value)


def trim() -> None:
    """Give the free pages of the heaps back to the system (about a millisecond)."""
    malloc_trim = getattr(_libc(), "malloc_trim", None)
    if malloc_trim is not None:
        malloc_trim(0)
