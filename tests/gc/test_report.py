"""What a collection reports and ``registry gc`` prints: sizes people read, "would
delete" in a dry run, what the grace period holds back and until when, one summary."""

from __future__ import annotations

import calendar

import pytest

from registry.gc.report import CollectionReport, format_duration, format_size

NOON = calendar.timegm((2024, 5, 1, 12, 0, 0, 0, 0, 0))
BLOB_A = "sha256:" + "a" * 64
BLOB_B = "sha256:" + "b" * 64
MANIFEST = "sha256:" + "c" * 64


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (48_210_033, "46.0 MiB"),
        (3 * 1024**3 + 1, "3.0 GiB"),
        (2 * 1024**6, "2048.0 PiB"),
    ],
)
def test_sizes_are_human_readable(size: int, text: str) -> None:
    assert format_size(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.5, "0.5s"), (90, "1m30s"), (3600, "1h"), (86400 * 2, "2d"), (5400, "1h30m")],
)
def test_durations_are_written_as_the_configuration_writes_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def report(dry_run: bool) -> CollectionReport:
    return CollectionReport(
        dry_run=dry_run,
        tags_deleted=["team/app:build-1"],
        manifests_deleted=[f"team/app@{MANIFEST}"],
        blobs_deleted=[MANIFEST, BLOB_A],
        bytes_freed=1234 + 5 * 1024**2,
        links_deleted=2,
        duration=0.25,
        grace_period=3600,
        held_back_manifests={f"team/new@{MANIFEST}": NOON + 60},
        held_back_blobs={BLOB_B: NOON},
        blob_sizes={MANIFEST: 1234, BLOB_A: 5 * 1024**2, BLOB_B: 2048},
    )


def test_a_run_lists_what_it_deleted_with_sizes_and_what_it_held_back() -> None:
    lines = report(dry_run=False).render().splitlines()
    assert lines == [
        "deleted tag team/app:build-1",
        f"deleted manifest team/app@{MANIFEST} (1.2 KiB)",
        f"deleted blob {MANIFEST} (1.2 KiB)",
        f"deleted blob {BLOB_A} (5.0 MiB)",
        f"held back until 2024-05-01 12:00:00 UTC: blob {BLOB_B} (2.0 KiB)",
        f"held back until 2024-05-01 12:01:00 UTC: manifest team/new@{MANIFEST}",
        "gc run finished in 0.25s: deleted 2 blobs (5.0 MiB), 1 manifest, 1 tag, 2 links, "
        "0 upload sessions; 0 spared (in use by a push); held back by the grace period (1h): "
        "1 manifest and 1 blob (2.0 KiB), until 2024-05-01 12:01:00 UTC at most",
    ]


def test_a_dry_run_says_would_delete_and_that_nothing_was_deleted() -> None:
    text = report(dry_run=True).render()
    assert "deleted tag" not in text.replace("would delete tag", "")
    assert "would delete tag team/app:build-1" in text
    assert f"would delete blob {BLOB_A} (5.0 MiB)" in text
    assert text.splitlines()[-1].startswith(
        "gc dry run finished in 0.25s, nothing deleted: would delete 2 blobs (5.0 MiB)"
    )
    assert text.count("finished in") == 1


def test_nothing_to_delete_and_nothing_held_back_says_so() -> None:
    summary = CollectionReport(duration=0.1).summary()
    assert summary == (
        "gc run finished in 0.10s: deleted 0 blobs (0 B), 0 manifests, 0 tags, 0 links, "
        "0 upload sessions; 0 spared (in use by a push); nothing held back by the grace period"
    )


def test_a_longer_untagged_age_is_named_beside_the_grace_period() -> None:
    held = CollectionReport(
        grace_period=3600,
        untagged_older_than=86400,
        held_back_manifests={f"a@{MANIFEST}": NOON},
    )
    assert "held back by the grace period (1h) and gc.untagged.older_than (1d)" in held.summary()


def test_an_incomplete_run_says_so() -> None:
    assert CollectionReport(complete=False).summary().endswith("; incomplete: unreadable manifests")
