"""The copier, runner and full passes between two stores in this process: copies are
byte for byte with index children and referrers (after their subject), blobs the target
has are skipped and others mounted rather than sent twice, an interrupted large copy
resumes in another runner from the offset the target holds, a job the target refuses
is recorded and retried on the next event, a target that cannot be reached stops the
delivery (to be retried whole), and a pass mirrors tag moves and, when enabled, deletes.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from registry import errors
from registry.errors import RegistryError
from registry.reference import Digest, parse_digest
from registry.remote import Unavailable
from registry.replication.copier import all_of
from registry.replication.endpoints import LocalRegistry
from registry.replication.state import Failures, Job, StatusRecord
from registry.replication.status import render, rule_status
from registry.store import RegistryStore
from registry.store.changes import Change, ManifestPushed
from tests.images import image, index, sha256
from tests.replication.stores import (
    BreakingSource,
    Cut,
    image_of,
    manifest_bytes,
    new_store,
    put_image,
    runner,
)

pytestmark = pytest.mark.anyio
KiB = 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def referrers_of(store: RegistryStore, repository: str, subject: str) -> set[str]:
    page, _ = await store.referrers.page(repository, parse_digest(subject), None, 100)
    return {d["digest"] for _, d in page}


async def test_a_copy_is_byte_for_byte_with_children_and_referrers() -> None:
    src, dst = new_store(), new_store()
    children = [image(), image(docker=False)]
    multi = index(children)
    await put_image(src, "team/app", multi, "v1")
    sbom = image(layers=1, subject=multi, artifact_type="application/spdx+json")
    signature = image(layers=1, subject=sbom, artifact_type="application/vnd.example.sig")
    await put_image(src, "team/app", sbom)
    await put_image(src, "team/app", signature)
    r = runner(src, dst, mapping={"prefix": "copy/"})
    copier = r.copier()

    assert await copier.run(Job("copy", "team/app", "v1"))

    for m in (multi, *children, sbom, signature):
        assert await manifest_bytes(dst, "copy/team/app", m.digest) == m.manifest
    assert await dst.tags.read("copy/team/app", "v1") == parse_digest(multi.digest)
    for m in (*children, sbom, signature):
        for blob in m.blobs:
            assert await dst.blobs.is_linked("copy/team/app", parse_digest(blob))
    assert await referrers_of(dst, "copy/team/app", multi.digest) == {sbom.digest}
    assert await referrers_of(dst, "copy/team/app", sbom.digest) == {signature.digest}
    assert (copier.tally.artifacts, copier.tally.manifests) == (3, 5)
    again = r.copier()
    assert not await again.run(Job("copy", "team/app", "v1"))  # in place: nothing to do
    assert again.tally.manifests == again.tally.blobs == 0


async def test_shared_layers_are_sent_once_and_mounted_elsewhere() -> None:
    src, dst = new_store(), new_store()
    base = [os.urandom(64 * KiB), os.urandom(32 * KiB)]
    images = {f"app{i}": image_of([*base, os.urandom(8 * KiB)]) for i in range(5)}
    for repository, img in images.items():
        await put_image(src, repository, img, "v1")
    r = runner(src, dst)
    copier = r.copier()

    await all_of([copier.run(Job("copy", repository, "v1")) for repository in images])

    unique = sum(len(b) for img in images.values() for b in img.blobs.values()) - 5 * sum(
        len(b) for b in base
    )
    t = copier.tally
    assert (t.blobs, t.mounted, t.skipped) == (2 + 2 * 5, 2 * 4, 0)
    assert t.bytes == sum(len(b) for b in base) + unique
    for repository, img in images.items():
        assert await manifest_bytes(dst, repository, "v1") == img.manifest
    # A second image in a repository that has the base: only its own blobs are sent.
    newer = image_of([*base, os.urandom(KiB)])
    await put_image(src, "app0", newer, "v2")
    second = r.copier()
    await second.run(Job("copy", "app0", "v2"))
    assert (second.tally.blobs, second.tally.mounted + second.tally.skipped) == (2, 2)
    assert second.tally.bytes == sum(len(b) for b in newer.blobs.values()) - sum(map(len, base))


async def test_an_interrupted_large_copy_resumes_where_the_target_stands() -> None:
    src, dst = new_store(), new_store()
    data = os.urandom(1024 * KiB + 123)
    img = image_of([data])
    await put_image(src, "big/app", img, "v1")
    first = runner(src, dst, chunk_size="64KiB")
    first.source = BreakingSource(src, limit=640 * KiB)
    with pytest.raises(Cut):
        await first.copier().run(Job("copy", "big/app", "v1"))
    assert len(await src.replication.uploads("r")) == 1  # where it stands, in storage

    [config] = [b for b in img.blobs.values() if b != data]
    config_there = await dst.blobs.is_linked("big/app", parse_digest(sha256(config)))
    second = runner(src, dst, chunk_size="64KiB")  # another process: nothing in memory
    copier = second.copier()
    await second.using(lambda: copier.run(Job("copy", "big/app", "v1")))

    rest = len(data) - 640 * KiB
    assert copier.tally.bytes == rest + (0 if config_there else len(config))
    assert await dst.blobs.is_linked("big/app", parse_digest(sha256(data)))
    assert await manifest_bytes(dst, "big/app", "v1") == img.manifest
    assert await src.replication.uploads("r") == []


class Refusing:
    """A listener of the target's store that refuses every manifest while ``on``."""

    def __init__(self) -> None:
        self.on = True

    async def before(self, change: Change) -> None:
        if self.on and isinstance(change, ManifestPushed):
            raise RegistryError(errors.DENIED, "refused by the target's policy")


async def test_a_refused_job_is_recorded_and_retried_on_the_next_event() -> None:
    src, dst = new_store(), new_store()
    refusing = Refusing()
    dst.changes.listen(refusing)
    first, second = image(), image()
    await put_image(src, "team/x", first, "v1")
    r = runner(src, dst)

    assert await r.deliver([Job("copy", "team/x", "v1")]) is None  # not a reason to wait
    failures = await Failures(src.replication, "r").load()
    [failure] = failures.values()
    assert failure.job == Job("copy", "team/x", "v1") and "refused" in failure.reason
    shown = await rule_status(src, r.config, src.clock.time())
    assert shown["failing"] == 1 and shown["failures"][0]["reason"] == (
        "DENIED: refused by the target's policy"
    )
    assert "copy team/x:v1 (1 attempts): DENIED: refused" in render({"rules": [shown]}, 0.0)

    refusing.on = False
    await put_image(src, "team/x", second, "v2")
    assert await r.deliver([Job("copy", "team/x", "v2")]) is None
    assert await manifest_bytes(dst, "team/x", "v1") == first.manifest  # retried first
    assert await manifest_bytes(dst, "team/x", "v2") == second.manifest
    assert await Failures(src.replication, "r").load() == {}
    status = StatusRecord.load(await src.replication.read_status("r", "events"))
    assert (status.totals.artifacts, status.totals.failed) == (2, 1)
    assert status.last is not None and status.last.outcome == "ok"


class Unreachable(LocalRegistry):
    async def tag_digest(self, repository: str, tag: str) -> Digest | None:
        raise Unavailable("cannot connect: connection refused", upstream="b", operation="head")


async def test_a_target_that_cannot_be_reached_stops_the_delivery() -> None:
    src, dst = new_store(), new_store()
    await put_image(src, "team/y", image(), "v1")
    r = runner(src, dst)
    r.target = Unreachable(dst, "r")

    error = await r.deliver([Job("copy", "team/y", "v1")])

    assert error is not None and "connection refused" in error
    assert await Failures(src.replication, "r").load() == {}  # waits; not a failure
    status = StatusRecord.load(await src.replication.read_status("r", "events"))
    assert status.last is not None and status.last.outcome == "failed"


async def full_pass(src: RegistryStore, dst: RegistryStore, **fields: Any) -> Any:
    run = await runner(src, dst, **fields).full_pass("manual")
    assert run.outcome == "ok", run.error
    return run


async def test_a_pass_mirrors_moves_and_deletes_only_when_enabled() -> None:
    src, mirror, keeper = new_store(), new_store(), new_store()
    v1, v2 = image(), image()
    await put_image(src, "team/a", v1, "v1")
    await put_image(src, "team/a", v2, "v2")
    await put_image(src, "team/a", image(), "dev")
    signature = image(layers=1)
    await put_image(src, "team/a", signature, f"sha256-{v1.digest.split(':')[1]}.sig")
    tags = {"include": ["v*"]}
    await full_pass(src, mirror, tags=tags, deletes=True)
    await full_pass(src, keeper, tags=tags)
    expected = {"v1", "v2", f"sha256-{v1.digest.split(':')[1]}.sig"}
    assert set(await mirror.tags.names("team/a")) == expected
    assert set(await keeper.tags.names("team/a")) == expected

    moved = image()
    await put_image(src, "team/a", moved, "v1")
    await src.manifests.delete("team/a", "v2")
    sbom = image(layers=1, subject=moved, artifact_type="application/spdx+json")
    await put_image(src, "team/a", sbom)
    run = await full_pass(src, mirror, tags=tags, deletes=True)
    await full_pass(src, keeper, tags=tags)

    assert run.tally.deletes == 1 and run.tally.artifacts == 2  # v1 moved, its SBOM
    assert await manifest_bytes(mirror, "team/a", "v1") == moved.manifest
    assert await manifest_bytes(keeper, "team/a", "v1") == moved.manifest
    assert "v2" not in await mirror.tags.names("team/a")
    assert "v2" in await keeper.tags.names("team/a")
    assert await referrers_of(mirror, "team/a", moved.digest) == {sbom.digest}
    quiet = await full_pass(src, mirror, tags=tags, deletes=True)
    assert (quiet.tally.artifacts, quiet.tally.deletes, quiet.tally.blobs) == (0, 0, 0)
