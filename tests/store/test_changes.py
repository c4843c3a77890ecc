"""The store tells its listeners of every change before it is visible, and a listener
that refuses a change leaves nothing of it behind."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator

import pytest

from registry import errors
from registry.context import RequestContext, current
from registry.errors import RegistryError
from registry.reference import Digest, parse_digest
from registry.store import RegistryStore
from registry.store.changes import (
    BlobMounted,
    BlobPushed,
    BlobUnlinked,
    Change,
    ManifestDeleted,
    ManifestPushed,
    RepositoryCreated,
    TagDeleted,
)
from storage_backends import CheckedDriver
from storage_backends.memory import MemoryDriver
from tests.asgi_registry import InProcessRegistry
from tests.images import Image, image, push_image

pytestmark = pytest.mark.anyio


class Recorder:
    """Records every change; refuses those ``refuse`` picks, before anything is written."""

    def __init__(self, store: RegistryStore) -> None:
        self.store = store
        self.changes: list[Change] = []
        self.refuse: type | None = None

    async def before(self, change: Change) -> None:
        if self.refuse is not None and isinstance(change, self.refuse):
            raise RegistryError(errors.DENIED, "refused by the test")
        self.changes.append(change)


@pytest.fixture
async def store() -> AsyncIterator[RegistryStore]:
    s = RegistryStore(CheckedDriver(MemoryDriver()))
    yield s
    await s.close()


async def push_blobs(store: RegistryStore, name: str, img: Image) -> None:
    for digest, data in img.blobs.items():
        state = await store.uploads.create(name)

        async def body(chunk: bytes = data) -> AsyncIterator[bytes]:
            yield chunk

        await store.uploads.append(name, state, body())
        await store.uploads.commit(name, state, parse_digest(digest))


async def test_every_change_is_told_before_it_is_visible(store: RegistryStore) -> None:
    recorder = Recorder(store)
    store.changes.listen(recorder)
    img = image(layers=1)
    await push_blobs(store, "team/app", img)
    digest = parse_digest(img.digest)
    await store.manifests.put("team/app", "v1", img.manifest, img.media_type)
    layer = sorted(parse_digest(d) for d in img.blobs)[0]
    assert await store.blobs.mount("team/other", layer, "team/app") is not None
    await store.blobs.unlink("team/other", layer)
    await store.manifests.delete("team/app", "v1")
    await store.manifests.put("team/app", "v2", img.manifest, img.media_type)
    await store.manifests.delete("team/app", str(digest))

    kinds = [type(c) for c in recorder.changes]
    # A repository is created by the first thing linked into it.
    assert kinds == [
        BlobPushed,
        RepositoryCreated,
        *[BlobPushed] * (len(img.blobs) - 1),
        ManifestPushed,
        BlobMounted,
        RepositoryCreated,
        BlobUnlinked,
        TagDeleted,
        ManifestPushed,
        ManifestDeleted,
    ]
    pushed = [c for c in recorder.changes if isinstance(c, ManifestPushed)]
    assert pushed[0].tags == ("v1",) and pushed[0].previous == {"v1": None}
    assert pushed[0].digest == digest and pushed[0].size == len(img.manifest)
    assert [d.digest for d in pushed[0].manifest.blobs] == [
        parse_digest(d) for d in json_blobs(img)
    ]
    deleted = [c for c in recorder.changes if isinstance(c, TagDeleted)]
    assert deleted == [TagDeleted("team/app", "v1", digest)]
    gone = [c for c in recorder.changes if isinstance(c, ManifestDeleted)]
    assert gone[0].tags == ("v2",) and gone[0].media_type == img.media_type


async def test_a_refused_manifest_push_writes_nothing(store: RegistryStore) -> None:
    recorder = Recorder(store)
    store.changes.listen(recorder)
    img = image(layers=1)
    await push_blobs(store, "team/app", img)
    recorder.refuse = ManifestPushed
    with pytest.raises(RegistryError) as refused:
        await store.manifests.put("team/app", "v1", img.manifest, img.media_type)
    assert refused.value.code is errors.DENIED
    assert await store.tags.read("team/app", "v1") is None
    assert not await store.manifests.has_revision("team/app", parse_digest(img.digest))


async def test_a_refused_blob_push_leaves_no_blob_and_no_session(store: RegistryStore) -> None:
    recorder = Recorder(store)
    store.changes.listen(recorder)
    recorder.refuse = BlobPushed
    data = b"refused bytes"
    digest = Digest("sha256", hashlib.sha256(data).hexdigest())
    state = await store.uploads.create("team/app")

    async def body() -> AsyncIterator[bytes]:
        yield data

    await store.uploads.append("team/app", state, body())
    with pytest.raises(RegistryError):
        await store.uploads.commit("team/app", state, digest)
    assert not await store.blobs.exists(digest)
    assert await store.uploads.list_ids("team/app") == []


def json_blobs(img: Image) -> list[str]:
    doc = json.loads(img.manifest)
    return [doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])]


def test_listeners_see_the_request_context_of_the_push() -> None:
    """A listener reads who pushed, and how, from registry.context, set per request."""
    seen: list[RequestContext] = []

    class Spy:
        async def before(self, change: Change) -> None:
            if isinstance(change, ManifestPushed):
                seen.append(current())

    with InProcessRegistry() as registry:
        registry.app.state.store.changes.listen(Spy())
        with registry.client() as client:
            push_image(client, "team/app", image(layers=1), "v1")
    assert [(c.origin, c.method) for c in seen] == [("client", "PUT")]
    assert seen[0].request_id and seen[0].actor is None
