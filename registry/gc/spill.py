"""Where a collection puts what it learned until it needs it again, so that its memory
does not grow with the registry: a temporary folder on local disk (``$TMPDIR``,
removed when the run ends).

* Per blob shard (``<alg>/<hex[:2]>``), lines of facts about the blobs of that shard:
  what a repository's mark changed, links to check, what a full mark listed. The blob
  phase reads one shard's lines at a time.
* Repositories marked but not yet swept, one file each: every repository is marked
  before any manifest is swept (an unreadable kept manifest anywhere stops the sweep).

A run holds at most ``BUFFERED`` lines in memory before it appends them to their files.
"""

from __future__ import annotations

import json
import pickle
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from registry.gc.run import Repository

BUFFERED = 50_000


class Spill:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="registry-gc-"))
        self._buffered: dict[str, list[str]] = defaultdict(list)
        self._count = 0
        self._written: set[str] = set()
        self._parked = 0

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------ shard lines

    def add(self, shard: str, line: list[Any]) -> None:
        self._buffered[shard].append(json.dumps(line, separators=(",", ":")))
        self._count += 1
        if self._count >= BUFFERED:
            self.flush()

    def flush(self) -> None:
        for shard, lines in self._buffered.items():
            with open(self._path(shard), "a", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
            self._written.add(shard)
        self._buffered.clear()
        self._count = 0

    def shards(self) -> set[str]:
        return self._written | set(self._buffered)

    def lines(self, shard: str) -> Iterator[list[Any]]:
        """Every line added for ``shard``, in order."""
        if shard in self._written:
            with open(self._path(shard), encoding="utf-8") as f:
                for text in f:
                    yield json.loads(text)
        for text in self._buffered.get(shard, ()):
            yield json.loads(text)

    def _path(self, shard: str) -> Path:
        return self.root / ("shard-" + shard.replace("/", "-"))

    # ------------------------------------------------------------------ parked repositories

    def park(self, repo: Repository) -> int:
        number = self._parked
        self._parked += 1
        with open(self.root / f"repository-{number}", "wb") as f:
            pickle.dump(repo, f, protocol=pickle.HIGHEST_PROTOCOL)
        return number

    def unpark(self, number: int) -> Repository:
        path = self.root / f"repository-{number}"
        with open(path, "rb") as f:
            repo: Repository = pickle.load(f)  # noqa: S301 -- written by this run
        path.unlink()
        return repo
