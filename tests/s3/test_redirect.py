"""Blob pulls with ``storage.s3.redirect``: a 307 to a presigned URL of the store, so
the bytes flow from S3 to the client; without it, blobs stream through (with Range)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.images import push_blob, sha256
from tests.rgw import RgwServer
from tests.server import RegistryServer

pytestmark = pytest.mark.s3

REPO = "redirect/app"
DATA = os.urandom(300_000)


@dataclass
class Servers:
    redirecting: RegistryServer
    streaming: RegistryServer
    endpoint_url: str


@pytest.fixture(scope="module")
def servers(
    request: pytest.FixtureRequest, rgw: RgwServer, tmp_path_factory: pytest.TempPathFactory
) -> Servers:
    """Two servers on the same prefix, one redirecting; the blob is pushed once."""
    prefix = f"redirect-{uuid.uuid4().hex[:12]}"

    def start(workdir: Path, redirect: bool) -> RegistryServer:
        s3 = rgw.s3_config(prefix=prefix, redirect=redirect, redirect_expiry="5m")
        config = {"storage": {"driver": "s3", "s3": s3.model_dump(exclude_none=True)}}
        server = RegistryServer(workdir, config)
        request.addfinalizer(server.stop)
        server.start()
        return server

    out = Servers(
        start(tmp_path_factory.mktemp("redirecting"), True),
        start(tmp_path_factory.mktemp("streaming"), False),
        rgw.endpoint_url,
    )
    with out.streaming.client() as c:
        push_blob(c, REPO, DATA)
    return out


def test_get_redirects_to_a_presigned_url_of_the_exact_bytes(servers: Servers) -> None:
    with servers.redirecting.client() as c:
        r = c.get(f"/v2/{REPO}/blobs/{sha256(DATA)}")
    assert r.status_code == 307
    assert r.headers["Docker-Content-Digest"] == sha256(DATA)
    location = r.headers["Location"]
    assert location.startswith(servers.endpoint_url + "/")
    query = parse_qs(urlsplit(location).query)
    assert query["X-Amz-Expires"] == ["300"]
    assert "X-Amz-Signature" in query
    pulled = httpx.get(location, timeout=30)
    assert pulled.status_code == 200
    assert pulled.content == DATA


def test_httpx_follows_the_redirect(servers: Servers) -> None:
    with servers.redirecting.client(follow_redirects=True) as c:
        r = c.get(f"/v2/{REPO}/blobs/{sha256(DATA)}")
    assert r.status_code == 200
    assert [h.status_code for h in r.history] == [307]
    assert r.content == DATA


def test_presigned_url_is_checked_by_the_store(servers: Servers) -> None:
    with servers.redirecting.client() as c:
        location = c.get(f"/v2/{REPO}/blobs/{sha256(DATA)}").headers["Location"]
    signature = parse_qs(urlsplit(location).query)["X-Amz-Signature"][0]
    tampered = location.replace(signature, ("0" if signature[0] != "0" else "1") + signature[1:])
    assert httpx.get(tampered, timeout=30).status_code == 403


def test_head_answers_itself_without_redirect(servers: Servers) -> None:
    with servers.redirecting.client() as c:
        r = c.head(f"/v2/{REPO}/blobs/{sha256(DATA)}")
    assert r.status_code == 200
    assert "Location" not in r.headers
    assert r.headers["Content-Length"] == str(len(DATA))
    assert r.headers["Docker-Content-Digest"] == sha256(DATA)


def test_missing_blob_is_404_not_a_redirect(servers: Servers) -> None:
    with servers.redirecting.client() as c:
        r = c.get(f"/v2/{REPO}/blobs/{sha256(b'never pushed')}")
    assert r.status_code == 404
    assert r.json()["errors"][0]["code"] == "BLOB_UNKNOWN"


def test_range_through_the_redirect(servers: Servers) -> None:
    with servers.redirecting.client(follow_redirects=True) as c:
        r = c.get(f"/v2/{REPO}/blobs/{sha256(DATA)}", headers={"Range": "bytes=1000-1999"})
    assert r.status_code == 206
    assert r.content == DATA[1000:2000]


def test_without_redirect_blobs_stream_through_with_range(servers: Servers) -> None:
    with servers.streaming.client() as c:
        url = f"/v2/{REPO}/blobs/{sha256(DATA)}"
        whole = c.get(url)
        assert whole.status_code == 200
        assert whole.content == DATA
        r = c.get(url, headers={"Range": "bytes=10-99"})
        assert r.status_code == 206
        assert r.headers["Content-Range"] == f"bytes 10-99/{len(DATA)}"
        assert r.headers["Content-Length"] == "90"
        assert r.content == DATA[10:100]
        tail = c.get(url, headers={"Range": "bytes=-5"})
        assert tail.status_code == 206
        assert tail.content == DATA[-5:]
        assert tail.headers["Content-Range"] == f"bytes {len(DATA) - 5}-{len(DATA) - 1}/{len(DATA)}"
