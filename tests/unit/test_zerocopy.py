"""Files sent from the event loop: when a read hands the rest of a file to threads (only
after a read that waited for the disk, not after one that was merely slow: a busy
machine), transfers through the worker's buffer and with sendfile, and which peers get
the buffer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# ------------------------------------------------------------- the worker's copy buffer


class _Transport:
    def get_write_buffer_size(self) -> int:
        return 0


class _Cycle:
    transport = _Transport()


@settings(max_examples=60, deadline=None)
@given(
    copy=st.booleans(),
    turns=st.lists(st.tuples(st.integers(0, 2), st.integers(1, 300_000)), min_size=1, max_size=60),
    sizes=st.lists(st.integers(1, 700_000), min_size=3, max_size=3),
)
def test_every_transfer_delivers_its_file_exactly_however_its_client_reads(
    tmp_path_factory: pytest.TempPathFactory,
    copy: bool,
    turns: list[tuple[int, int]],
    sizes: list[int],
) -> None:
    """Three transfers take turns, their clients reading at random, through the worker's
    buffer (what a full socket left in it is sent first, or read again once another
    transfer used the buffer) or with sendfile: every client gets its file exactly."""
    folder = tmp_path_factory.mktemp("files")
    loop = asyncio.new_event_loop()
    files, pairs, transfers, received = [], [], [], []
    try:
        for i, size in enumerate(sizes):
            data = os.urandom(size)
            (folder / str(i)).write_bytes(data)
            files.append(os.open(folder / str(i), os.O_RDONLY))
            ours, theirs = socket.socketpair()
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16_384)
            ours.setblocking(False)
            pairs.append((ours, theirs, data))
            transfer = zerocopy._Transfer(
                _Cycle(),  # type: ignore[arg-type]
                loop,
                ours.fileno(),
                files[-1],
                0,
                size,
                copy=copy,
            )
            transfers.append(transfer)
            received.append(bytearray())
        pending = [*turns, *((i, 1 << 30) for i in range(3))]
        while pending:
            i, drain = pending.pop(0)
            transfers[i].on_room()
            theirs = pairs[i][1]
            theirs.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while drain > 0 and (chunk := theirs.recv(min(drain, 65_536))):
                    received[i] += chunk
                    drain -= len(chunk)
            if not pending and not all(t.done.done() for t in transfers):
                pending = [(j, 1 << 30) for j, t in enumerate(transfers) if not t.done.done()]
        for i, transfer in enumerate(transfers):
            assert transfer.done.result() is None
            assert bytes(received[i]) == pairs[i][2]
    finally:
        for fd in files:
            os.close(fd)
        for ours, theirs, _ in pairs:
            ours.close()
            theirs.close()
        loop.close()


@pytest.mark.parametrize(
    ("peer", "copied"),
    [
        (("127.0.0.1", 5000), True),
        (("127.8.9.10", 5000), True),
        (("::1", 5000, 0, 0), True),
        (("::ffff:127.0.0.1", 5000, 0, 0), True),
        (("10.1.2.3", 5000), False),
        (("2001:db8::1", 5000, 0, 0), False),
        (("::ffff:10.1.2.3", 5000, 0, 0), False),
        ("", False),  # a Unix socket
        (None, False),
    ],
)
def test_files_are_copied_for_peers_on_this_machine_only(peer: object, copied: bool) -> None:
    assert zerocopy._on_this_machine(peer) is copied
