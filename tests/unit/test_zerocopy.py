"""When a sendfile on the event loop hands the rest of a file to threads: only after a
call that waited for the disk, not after one that was merely slow (a busy machine)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from registry import zerocopy


def _evicted(path: Path, size: int) -> int:
    path.write_bytes(os.urandom(size))
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)  # dirty pages cannot be dropped
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    return fd


def test_reads_the_disk_served_are_counted_and_the_page_cache_s_are_not(
    tmp_path: Path,
) -> None:
    fd = _evicted(tmp_path / "blob", 8 << 20)
    try:
        before = zerocopy._disk_reads()
        os.pread(fd, 8 << 20, 0)
        cold = zerocopy._disk_reads() - before
        before = zerocopy._disk_reads()
        os.pread(fd, 8 << 20, 0)
        warm = zerocopy._disk_reads() - before
    finally:
        os.close(fd)
    assert cold > 0
    assert warm == 0


def test_a_slow_call_that_read_nothing_from_the_disk_stays_on_the_event_loop() -> None:
    long_ago = time.perf_counter() - 1.0
    assert not zerocopy._waited_for_disk(long_ago, zerocopy._disk_reads())


def test_a_slow_call_that_read_from_the_disk_goes_to_threads() -> None:
    long_ago = time.perf_counter() - 1.0
    assert zerocopy._waited_for_disk(long_ago, zerocopy._disk_reads() - 1)


def test_a_quick_call_stays_on_the_event_loop_whatever_it_read() -> None:
    now = time.perf_counter()
    assert not zerocopy._waited_for_disk(now, zerocopy._disk_reads() - 1)
