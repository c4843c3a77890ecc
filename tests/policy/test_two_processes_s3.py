"""Two ``registry serve`` processes on one bucket of a real S3 server (Ceph RGW) agree on
usage and enforce one quota together: everything quotas keep is in the bucket."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import start_server
from tests.images import image, push_blob, push_image
from tests.policy.conftest import digest_of, policy_config, random_blob

pytestmark = pytest.mark.s3

KIB = 1024


def namespace(url: str) -> dict[str, Any]:
    row: dict[str, Any] = httpx.get(f"{url}/api/usage", timeout=30).json()["namespaces"][0]
    return row


def test_two_processes_on_one_bucket_agree_and_share_the_limit(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    rgw = request.getfixturevalue("rgw")
    s3 = rgw.s3_config(prefix=f"t-{uuid.uuid4().hex[:12]}").model_dump(exclude_none=True)
    config = policy_config(
        {"quotas": [{"name": "team", "repositories": ["team/**"], "limit": 512 * KIB}]},
        storage={"driver": "s3", "s3": s3},
    )
    one = start_server(request, tmp_path / "one", config=config)
    two = start_server(request, tmp_path / "two", config=config)
    with (
        httpx.Client(base_url=one.url, timeout=60) as a,
        httpx.Client(base_url=two.url, timeout=60) as b,
    ):
        shared = image(layers=2, layer_size=100 * KIB)
        push_image(a, "team/app", shared, "v1")
        push_image(b, "team/web", shared, "v1")  # the same layers, through the other
        first, second = namespace(one.url), namespace(two.url)
        assert first == second
        assert first["used_bytes"] == len(shared.manifest) + sum(
            len(d) for d in shared.blobs.values()
        )
        # What one process let in, the other counts against the limit.
        data = random_blob(350 * KIB)
        r = b.post(
            "/v2/team/other/blobs/uploads/", params={"digest": digest_of(data)}, content=data
        )
        assert r.status_code == 403, r.text
        assert r.json()["errors"][0]["detail"]["used"] == first["used_bytes"]
        # A delete through one is seen by the other at once.
        assert a.delete(f"/v2/team/app/manifests/{shared.digest}").status_code == 202
        assert b.delete(f"/v2/team/web/manifests/{shared.digest}").status_code == 202
        assert namespace(two.url)["used_bytes"] == namespace(one.url)["used_bytes"] == 0
        push_blob(b, "team/other", data)
