"""``/v2/_catalog`` on a bucket with thousands of repositories: a page is one listing
from where the last page stopped, never a walk of the whole prefix."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from registry.store import layout
from tests.rgw import RgwServer
from tests.server import RegistryServer

pytestmark = pytest.mark.s3

PAGE = 100
PAGE_BUDGET = 1.0  # seconds; CNCF distribution takes over a minute on such a bucket


def repository_names() -> list[str]:
    """About 3000 names, with the neighbours whose marker order is easy to get wrong:
    ``lib`` < ``lib-x`` < ``lib.x`` < ``lib/x`` < ``lib_x`` (prefixes first)."""
    names = [f"team{i % 40:02d}/service-{i:04d}" for i in range(2960)]
    for base in ("lib", "team07", "team07/service-0007"):
        names += [base, f"{base}-x", f"{base}.x", f"{base}/x", f"{base}_x", f"{base}__x"]
    names += [f"zz/{i}" for i in range(20)]
    return sorted(set(names))


NAMES = repository_names()


@pytest.fixture(scope="module")
def catalog_server(
    request: pytest.FixtureRequest, rgw: RgwServer, tmp_path_factory: pytest.TempPathFactory
) -> RegistryServer:
    prefix = f"catalog-{uuid.uuid4().hex[:12]}"
    local = threading.local()

    def put_marker(name: str) -> None:
        if not hasattr(local, "s3"):
            local.s3 = rgw.client()  # one client (and connection pool) per thread
        s3: Any = local.s3
        s3.put_object(Bucket=rgw.bucket, Key=f"{prefix}/{layout.catalog_marker(name)}", Body=b"")

    started = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(put_marker, NAMES))
    print(f"\n{len(NAMES)} catalog markers written in {time.perf_counter() - started:.1f}s")

    s3_config = rgw.s3_config(prefix=prefix).model_dump(exclude_none=True)
    config = {"storage": {"driver": "s3", "s3": s3_config}}
    server = RegistryServer(tmp_path_factory.mktemp("catalog"), config)
    request.addfinalizer(server.stop)
    server.start()
    return server


def timed_page(server: RegistryServer, last: str | None) -> tuple[float, list[str], str | None]:
    params = {"n": str(PAGE)} if last is None else {"n": str(PAGE), "last": last}
    with server.client() as c:
        started = time.perf_counter()
        r = c.get("/v2/_catalog", params=params)
        elapsed = time.perf_counter() - started
    assert r.status_code == 200, r.text
    names: list[str] = r.json()["repositories"]
    return elapsed, names, r.headers.get("Link")


def test_first_page_answers_well_under_a_second(catalog_server: RegistryServer) -> None:
    elapsed, names, link = timed_page(catalog_server, None)
    print(f"\nfirst page of {PAGE} of {len(NAMES)} repositories: {elapsed * 1000:.0f} ms")
    assert names == NAMES[:PAGE]
    assert link == f'</v2/_catalog?n={PAGE}&last={NAMES[PAGE - 1].replace("/", "%2F")}>; rel="next"'
    assert elapsed < PAGE_BUDGET


def test_middle_page_answers_well_under_a_second(catalog_server: RegistryServer) -> None:
    middle = len(NAMES) // 2
    elapsed, names, _ = timed_page(catalog_server, NAMES[middle - 1])
    print(f"\npage after {NAMES[middle - 1]!r}: {elapsed * 1000:.0f} ms")
    assert names == NAMES[middle : middle + PAGE]
    assert elapsed < PAGE_BUDGET


def test_pagination_visits_every_name_in_order(catalog_server: RegistryServer) -> None:
    seen: list[str] = []
    url: str | None = f"/v2/_catalog?n={PAGE}"
    slowest = 0.0
    with catalog_server.client() as c:
        while url:
            started = time.perf_counter()
            r = c.get(url)
            slowest = max(slowest, time.perf_counter() - started)
            assert r.status_code == 200, r.text
            page = r.json()["repositories"]
            assert 0 < len(page) <= PAGE
            seen += page
            link = r.headers.get("Link")
            url = link[1 : link.index(">")] if link else None
    print(f"\n{len(seen)} names, {PAGE} a page; slowest page {slowest * 1000:.0f} ms")
    assert seen == NAMES
