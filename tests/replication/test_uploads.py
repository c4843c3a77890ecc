"""Upload slots that no copy resumes -- the blob went, the rule went -- do not stay for
ever: a runner's pass (or delivery) drops those of its rule not written for a day, with
the upload session each holds on the target; the service drops a removed rule's. In
virtual time; the target's side of the DELETE against a real `registry serve`."""

from __future__ import annotations

import json
import os

import pytest

from registry.config import Config
from registry.errors import RegistryError
from registry.reference import Digest, parse_digest
from registry.remote import NotFound, RegistryClient, RemoteSettings
from registry.replication.endpoints import RemoteRegistry
from registry.replication.runner import UPLOADS_SWEEP
from registry.replication.service import ReplicationService
from registry.replication.state import UPLOAD_EXPIRY, Job, UploadSlots
from registry.store import RegistryStore
from storage_backends.memory import MemoryDriver
from tests.clocks import VirtualClock
from tests.images import sha256
from tests.replication.stores import BreakingSource, Cut, image_of, put_image, runner
from tests.server import RegistryServer

pytestmark = pytest.mark.anyio
KiB = 1024
HOUR = 3600.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _digest(seed: str) -> Digest:
    return parse_digest(sha256(seed.encode()))


def clocked_store(clock: VirtualClock) -> RegistryStore:
    return RegistryStore(MemoryDriver(clock=clock.time), clock=clock)


async def test_a_slot_no_copy_resumes_goes_after_a_day_with_the_targets_session() -> None:
    clock = VirtualClock()
    src, dst = clocked_store(clock), clocked_store(clock)
    await put_image(src, "big/app", image_of([os.urandom(512 * KiB)]), "v1")
    first = runner(src, dst, chunk_size="64KiB")
    first.source = BreakingSource(src, limit=256 * KiB)
    with pytest.raises(Cut):
        await first.copier().run(Job("copy", "big/app", "v1"))
    [key] = await src.replication.uploads("r")
    doc = json.loads(await src.replication.read_upload("r", key) or b"{}")
    session = doc["upload_id"]
    assert session in await dst.uploads.list_ids("big/app")
    # The image goes before the copy is resumed: no pass will copy that blob again.
    await src.manifests.delete("big/app", "v1")

    later = runner(src, dst, chunk_size="64KiB")  # another process
    await clock.advance(UPLOAD_EXPIRY - HOUR)
    assert (await later.full_pass("manual")).outcome == "ok"
    assert await src.replication.uploads("r") == [key]  # not a day old yet
    assert session in await dst.uploads.list_ids("big/app")

    await clock.advance(HOUR + UPLOADS_SWEEP)
    assert (await later.full_pass("manual")).outcome == "ok"
    assert await src.replication.uploads("r") == []
    assert session not in await dst.uploads.list_ids("big/app")  # cancelled on the target
    with pytest.raises(RegistryError):
        await dst.uploads.get("big/app", session)


async def test_a_slot_written_recently_is_resumed_not_dropped() -> None:
    """A copy the target acknowledges writes its slot at every chunk: an old upload
    that is still making progress keeps it."""
    clock = VirtualClock()
    src, dst = clocked_store(clock), clocked_store(clock)
    data = os.urandom(512 * KiB)
    await put_image(src, "big/app", image_of([data]), "v1")
    first = runner(src, dst, chunk_size="64KiB")
    first.source = BreakingSource(src, limit=256 * KiB)
    with pytest.raises(Cut):
        await first.copier().run(Job("copy", "big/app", "v1"))
    await clock.advance(UPLOAD_EXPIRY - HOUR)

    later = runner(src, dst, chunk_size="64KiB")
    copier = later.copier()
    await later.using(lambda: copier.run(Job("copy", "big/app", "v1")))
    assert copier.tally.bytes < len(data)  # resumed, not started over
    assert await src.replication.uploads("r") == []


async def test_the_slots_of_a_removed_rule_go_after_a_day() -> None:
    clock = VirtualClock()
    store = clocked_store(clock)
    gone = UploadSlots(store.replication, "removed", "")
    kept = UploadSlots(store.replication, "to-b", "http://b.example")
    await gone.slot("team/app", _digest("a")).save({"upload_id": "x", "repository": "team/app"})
    await kept.slot("team/app", _digest("b")).save({"upload_id": "y", "repository": "team/app"})
    rule = {"name": "to-b", "direction": "push", "remote": {"url": "http://b.example"}}
    service = ReplicationService(store, Config.model_validate({"replication": {"rules": [rule]}}))
    try:
        await clock.advance(UPLOAD_EXPIRY - HOUR)
        assert await service.expire_removed_uploads() == 0
        await clock.advance(2 * HOUR)
        assert await service.expire_removed_uploads() == 1
        assert await store.replication.uploads("removed") == []
        # A configured rule's slots are its runner's to judge (with its target at hand).
        assert len(await store.replication.uploads("to-b")) == 1
    finally:
        await service.stop()


async def test_a_remote_targets_session_is_cancelled(site_b: RegistryServer) -> None:
    async with RegistryClient(RemoteSettings(url=site_b.url)) as client:
        session = await client.start_upload("slots/app")
        doc = {"repository": session.repository, "location": session.location, "offset": 0}
        await RemoteRegistry(client).abandon_upload(doc)
        with pytest.raises(NotFound):
            await client.upload_status(session)
        await RemoteRegistry(client).abandon_upload(doc)  # gone already: fine
        await RemoteRegistry(client).abandon_upload({"upload_id": "local"})  # not its kind
