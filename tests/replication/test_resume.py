"""kill -9 of the pushing site while it copies a 1 GiB blob: after a restart the copy
goes on from the offset the target acknowledged, not from zero. A fault proxy in front
of the target counts the bytes the copy sent: well under twice the blob in total."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults import FaultProxy
from tests.images import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, descriptor, push_blob
from tests.replication.conftest import arrived, push_rule, serve, site, wait_until

MiB = 1024 * 1024
GiB = 1024 * MiB
BLOCK = os.urandom(MiB)


def big_blob() -> Iterator[bytes]:
    """1 GiB of content, streamed: one random MiB, 1024 times with a counter mixed in."""
    for i in range(GiB // MiB):
        yield i.to_bytes(8, "big") + BLOCK[8:]


def big_digest() -> str:
    hasher = hashlib.sha256()
    for piece in big_blob():
        hasher.update(piece)
    return "sha256:" + hasher.hexdigest()


def test_kill_9_during_a_1_gib_copy_resumes_from_the_acknowledged_offset(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    b = serve(request, tmp_path / "b", {})
    proxy = FaultProxy(b.url).start()
    request.addfinalizer(proxy.stop)
    a = serve(request, tmp_path / "a", site([push_rule("to-b", proxy.url)]))
    digest = big_digest()
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": [{"mediaType": OCI_LAYER, "digest": digest, "size": GiB}],
        }
    ).encode()
    with a.client(timeout=300) as c:
        push_blob(c, "big/app", config)
        r = c.post(
            "/v2/big/app/blobs/uploads/",
            params={"digest": digest},
            content=big_blob(),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(GiB)},
        )
        assert r.status_code == 201, r.text
        r = c.put(
            "/v2/big/app/manifests/v1", content=manifest, headers={"Content-Type": OCI_MANIFEST}
        )
        assert r.status_code == 201, r.text

    def sent() -> int:
        return proxy.request_bytes["PATCH"] + proxy.request_bytes["PUT"]

    wait_until(lambda: sent() > 300 * MiB, timeout=120, what="a third of the copy")
    a.stop(signal.SIGKILL)
    before = sent()
    slots = list((a.data_dir / "replication" / "to-b" / "uploads").iterdir())
    assert len(slots) == 1  # where the copy stood, in storage
    assert json.loads(slots[0].read_text())["offset"] >= 256 * MiB

    a.start()

    with httpx.Client(base_url=b.url, timeout=60) as direct:
        wait_until(lambda: arrived(direct, "big/app", "v1", manifest), timeout=240, what="v1 on B")
        head = direct.head(f"/v2/big/app/blobs/{digest}")
        assert head.status_code == 200 and int(head.headers["content-length"]) == GiB
    total = sent()
    # The second process asked where the upload stood and sent the rest: at most the
    # chunk cut by the kill again, never the whole blob.
    assert proxy.count("GET", "/blobs/uploads/") >= 1
    assert total < GiB + 64 * MiB, f"{total / MiB:.0f} MiB sent for a 1 GiB blob"
    assert total - before < GiB - 200 * MiB
    assert not any((a.data_dir / "replication" / "to-b" / "uploads").iterdir())
