"""What a collection did (or, in a dry run, would do), for the log, the metrics and
``registry gc``: counts, the lists of what went with their sizes, and what the grace
period holds back and until when -- so that a run that deletes nothing says why."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def format_size(size: int) -> str:
    """``512 B``, ``4.0 KiB``, ``46.0 MiB``: binary units, one decimal."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            break
    return f"{value:.1f} {unit}"


def format_duration(seconds: float) -> str:
    """``90s``, ``15m``, ``1h``, ``2d``, ``1h30m``: as the configuration writes them."""
    if seconds < 60:
        return f"{seconds:g}s"
    parts = []
    rest = round(seconds)
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, length)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts[:2])


def format_time(storage_time: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(storage_time))


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


@dataclass
class CollectionReport:
    dry_run: bool = False
    tags_deleted: list[str] = field(default_factory=list)  # "<repository>:<tag>"
    manifests_deleted: list[str] = field(default_factory=list)  # "<repository>@<digest>"
    blobs_deleted: list[str] = field(default_factory=list)  # digests
    bytes_freed: int = 0
    links_deleted: int = 0
    uploads_purged: int = 0
    spared: int = 0  # candidates the final check found in use
    duration: float = 0.0
    # False when a kept manifest could not be parsed: its references are unknown, so
    # nothing but tags and upload sessions was deleted.
    complete: bool = True
    # What the grace period (manifests: or a longer gc.untagged.older_than) keeps from
    # going now, with the storage time after which a run may delete it.
    grace_period: float = 0.0
    untagged_older_than: float = 0.0
    held_back_manifests: dict[str, float] = field(default_factory=dict)  # "<repo>@<digest>"
    held_back_blobs: dict[str, float] = field(default_factory=dict)  # digests
    # Bytes of the blobs listed above (deleted or held back), by digest.
    blob_sizes: dict[str, int] = field(default_factory=dict)
    # Whether this run marked every repository, and how many of how many it marked
    # (an incremental run re-marks those that changed: registry/gc/plan.py).
    full_mark: bool = False
    repositories: int = 0
    repositories_marked: int = 0

    def summary(self) -> str:
        """One line: what went (or would go), what was held back and until when."""
        if self.dry_run:
            head = f"gc dry run finished in {self.duration:.2f}s, nothing deleted: would delete"
        else:
            head = f"gc run finished in {self.duration:.2f}s: deleted"
        text = (
            f"{head} {_count(len(self.blobs_deleted), 'blob')} "
            f"({format_size(self.bytes_freed)}), "
            f"{_count(len(self.manifests_deleted), 'manifest')}, "
            f"{_count(len(self.tags_deleted), 'tag')}, {_count(self.links_deleted, 'link')}, "
            f"{_count(self.uploads_purged, 'upload session')}; "
            f"{self.spared} spared (in use by a push)"
        )
        text += "; " + self._held_back()
        if self.repositories:
            how = "full mark" if self.full_mark else "incremental mark"
            text += f"; {how}: {self.repositories_marked} of {self.repositories} repositories"
        return text if self.complete else text + "; incomplete: unreadable manifests"

    def _held_back(self) -> str:
        manifests, blobs = self.held_back_manifests, self.held_back_blobs
        if not manifests and not blobs:
            return "nothing held back by the grace period"
        window = f"the grace period ({format_duration(self.grace_period)})"
        if manifests and self.untagged_older_than > self.grace_period:
            longer = format_duration(self.untagged_older_than)
            window += f" and gc.untagged.older_than ({longer})"
        held = []
        if manifests:
            held.append(_count(len(manifests), "manifest"))
        if blobs:
            size = sum(self.blob_sizes.get(b, 0) for b in blobs)
            held.append(f"{_count(len(blobs), 'blob')} ({format_size(size)})")
        last = max([*manifests.values(), *blobs.values()])
        return f"held back by {window}: {' and '.join(held)}, until {format_time(last)} at most"

    def render(self) -> str:
        """What ``registry gc`` prints: one line per thing deleted (or that would be)
        and per thing held back, then the summary."""
        verb = "would delete" if self.dry_run else "deleted"
        lines = [f"{verb} tag {t}" for t in self.tags_deleted]
        lines += [
            f"{verb} manifest {m}{self._size(m.partition('@')[2])}" for m in self.manifests_deleted
        ]
        lines += [f"{verb} blob {b}{self._size(b)}" for b in self.blobs_deleted]
        held = [(t, f"manifest {m}") for m, t in self.held_back_manifests.items()]
        held += [(t, f"blob {b}{self._size(b)}") for b, t in self.held_back_blobs.items()]
        lines += [f"held back until {format_time(t)}: {what}" for t, what in sorted(held)]
        lines.append(self.summary())
        return "\n".join(lines)

    def _size(self, digest: str) -> str:
        size = self.blob_sizes.get(digest)
        return "" if size is None else f" ({format_size(size)})"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
