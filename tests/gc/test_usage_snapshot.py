"""The usage snapshot each collection writes equals an independent recount of the
storage (tests/gc/storage.py ``recount``), after random sequences of pushes, shared
layers, indexes, referrers, mounts, loose uploads, tag and manifest deletes, the clock
moving on, and collections -- incremental ones, full ones, and ones after a run that
stopped half way; and a full mark right after an incremental one finds the same."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import pytest

from registry.config import GcConfig
from registry.errors import RegistryError
from registry.gc import Collector
from registry.patterns import matches_any
from registry.reference import parse_digest
from registry.store import RepositoryUsage, UsageSnapshot
from tests.gc.collection import make_image, make_index
from tests.gc.inprocess import HOUR, CollectorRig
from tests.gc.storage import Recount, recount
from tests.images import Image

pytestmark = pytest.mark.anyio

REPOSITORIES = ("team-a/api", "team-a/web", "team-a/sub/job", "team-b/app", "solo")
GROUPS = {"team-a/**": ["team-a/**"], "team-b": ["team-b/*"], "apps": ["*/app", "*/api"]}


def collector(registry: CollectorRig) -> Collector:
    return Collector(
        registry.store,
        GcConfig(grace_period=60),
        upload_expiry=24 * HOUR,
        settle=0.2,  # the lease's: long enough for a loaded test machine
        usage_groups=GROUPS,
    )


def as_recount(snapshot: UsageSnapshot) -> Recount:
    return Recount(
        {
            r.name: (r.held_bytes, r.unique_bytes, r.manifests, r.tags)
            for r in snapshot.repositories
        },
        dict(snapshot.groups),
        snapshot.total_bytes,
        snapshot.reclaimable_bytes,
    )


@contextlib.contextmanager
def frozen(registry: CollectorRig) -> Iterator[None]:
    """The storage's clock stands still (the process's monotonic one goes on)."""
    now = registry.clock.time()
    registry.clock.time = lambda: now  # type: ignore[method-assign]
    try:
        yield
    finally:
        del registry.clock.time


async def counted(registry: CollectorRig) -> Recount:
    members = {g: (lambda name, p=tuple(p): matches_any(p, name)) for g, p in GROUPS.items()}
    return await recount(registry.driver, members)


class Story:
    """Random registry traffic over a pool of layers that images share."""

    def __init__(self, registry: CollectorRig, seed: int) -> None:
        self.registry = registry
        self.rng = random.Random(seed)
        self.layers = [os.urandom(self.rng.randint(100, 4000)) for _ in range(6)]
        self.tagged: dict[tuple[str, str], Image] = {}

    def layer(self) -> bytes:
        if self.rng.random() < 0.6:
            return self.rng.choice(self.layers)
        return os.urandom(self.rng.randint(100, 4000))

    async def step(self) -> None:
        rng, registry = self.rng, self.registry
        repo = rng.choice(REPOSITORIES)
        tag = f"t{rng.randint(0, 3)}"
        roll = rng.random()
        if roll < 0.3:
            img = make_image([self.layer() for _ in range(rng.randint(1, 3))])
            await registry.push(repo, img, tag)
            self.tagged[(repo, tag)] = img
        elif roll < 0.4:
            img = make_index([make_image([self.layer()]), make_image([self.layer()])])
            await registry.push(repo, img, tag)
            self.tagged[(repo, tag)] = img
        elif roll < 0.5 and self.tagged:
            (repo, _), subject = rng.choice(sorted(self.tagged.items(), key=lambda i: i[0]))
            sig = make_image([os.urandom(64)], subject=subject, artifact_type="application/x-sig")
            await registry.push(repo, sig)  # untagged, as signing tools push them
        elif roll < 0.6 and self.tagged:
            (repo, tag), _ = rng.choice(sorted(self.tagged.items(), key=lambda i: i[0]))
            await registry.store.manifests.delete(repo, tag)
            del self.tagged[(repo, tag)]
        elif roll < 0.65 and self.tagged:
            (repo, tag), img = rng.choice(sorted(self.tagged.items(), key=lambda i: i[0]))
            with contextlib.suppress(RegistryError):  # gone already, with another tag of it
                await registry.store.manifests.delete(repo, img.digest)
            self.tagged = {k: v for k, v in self.tagged.items() if k[0] != repo or v != img}
        elif roll < 0.72:
            source = rng.choice(REPOSITORIES)
            digest = await registry.upload(source, self.layer())
            await registry.store.blobs.mount(repo, digest, source)  # a link nothing uses
        elif roll < 0.78:
            await registry.upload(repo, os.urandom(rng.randint(10, 500)))  # loose
        elif roll < 0.9:
            registry.age(rng.choice([5.0, 30.0, 61.0, HOUR]))
        else:
            pass


@pytest.mark.parametrize("seed", range(6))
async def test_the_snapshot_equals_a_recount_after_every_collection(seed: int) -> None:
    registry = CollectorRig()
    gc = collector(registry)
    story = Story(registry, seed)
    rng = random.Random(seed + 100)
    runs = {"full": 0, "incremental": 0}
    for _ in range(12):
        for _ in range(rng.randint(2, 8)):
            await story.step()
        with frozen(registry):  # the same moment for both runs below
            report = await gc.run(full=rng.random() < 0.15)
            runs["full" if report.full_mark else "incremental"] += 1
            snapshot = await registry.store.usage.read()
            assert snapshot is not None
            assert as_recount(snapshot) == await counted(registry), report.summary()
            if rng.random() < 0.3:
                # A full mark at the same moment deletes nothing more and counts the same.
                again = await gc.run(full=True)
                assert again.manifests_deleted == [] and again.blobs_deleted == []
                full = await registry.store.usage.read()
                assert full is not None and as_recount(full) == as_recount(snapshot)
    assert runs["incremental"] >= 5, runs


async def test_the_snapshot_counts_shared_layers_once_per_group() -> None:
    registry = CollectorRig()
    shared, a_only, b_only = os.urandom(3000), os.urandom(2000), os.urandom(1000)
    a, b = make_image([shared, a_only]), make_image([shared, b_only])
    await registry.push("team-a/api", a, "v1")
    await registry.push("team-a/web", b, "v1")
    await registry.push("team-b/app", b, "v1")

    await collector(registry).run()

    snapshot = await registry.store.usage.read()
    assert snapshot is not None
    size = {d: len(data) for img in (a, b) for d, data in img.blobs.items()}
    a_bytes = len(a.manifest) + sum(size[d] for d in a.blobs)
    b_bytes = len(b.manifest) + sum(size[d] for d in b.blobs)
    usage = {r.name: r for r in snapshot.repositories}
    # team-a/api alone holds its config, a_only and its manifest; shared is held thrice.
    a_config = next(d for d in a.blobs if size[d] not in (3000, 2000))
    assert usage["team-a/api"] == RepositoryUsage(
        "team-a/api", a_bytes, 2000 + size[a_config] + len(a.manifest), 1, 1
    )
    assert usage["team-a/web"].unique_bytes == 0  # b is in team-b/app too
    assert snapshot.groups["team-a/**"] == a_bytes + b_bytes - 3000
    assert snapshot.groups["team-b"] == b_bytes
    assert snapshot.total_bytes == a_bytes + b_bytes - 3000
    assert snapshot.reclaimable_bytes == 0
    assert await registry.has_blob(parse_digest(a.digest))
