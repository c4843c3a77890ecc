"""/metrics over HTTP: what is counted, under which labels, and that labels stay bounded.

In this process: its metrics are the process's, which every registry of the test run
adds to, so tests compare a scrape before and after what they do. The sum over workers
needs a real multi-worker server."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.asgi_registry import InProcessRegistry
from tests.conftest import start_server
from tests.images import image, push_image, sha256
from tests.ops.helpers import denying_s3, scrape, series, value
from tests.ops.test_health import s3_config, s3_driver

MANIFEST_ROUTE = "/v2/{name}/manifests/{reference}"
BLOB_ROUTE = "/v2/{name}/blobs/{digest}"


@pytest.fixture(scope="module")
def metrics_registry() -> Iterator[InProcessRegistry]:
    with InProcessRegistry() as registry:
        yield registry


@pytest.fixture
def metrics_client(metrics_registry: InProcessRegistry) -> Iterator[httpx.Client]:
    with metrics_registry.client() as c:
        yield c


def test_requests_latency_and_bytes_are_counted_by_route_template(
    metrics_registry: InProcessRegistry, metrics_client: httpx.Client
) -> None:
    client = metrics_client
    driver = metrics_registry.driver.name
    before = scrape(client)
    name = f"metrics/{uuid.uuid4().hex[:8]}"
    img = image(layers=1, layer_size=50_000)
    push_image(client, name, img, tag="v1")
    layer = json.loads(img.manifest)["layers"][0]
    assert client.get(f"/v2/{name}/blobs/{layer['digest']}").status_code == 200
    assert client.get(f"/v2/{name}/manifests/nope").status_code == 404
    after = scrape(client)

    def delta(metric: str, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    assert (
        delta("registry_http_requests_total", method="PUT", route=MANIFEST_ROUTE, status="201") == 1
    )
    assert (
        delta("registry_http_requests_total", method="GET", route=MANIFEST_ROUTE, status="404") == 1
    )
    assert delta("registry_http_requests_total", method="GET", route=BLOB_ROUTE, status="200") == 1
    assert (
        delta("registry_http_request_duration_seconds_count", method="GET", route=BLOB_ROUTE) == 1
    )
    assert (
        delta("registry_http_response_body_bytes_total", method="GET", route=BLOB_ROUTE)
        == layer["size"]
    )
    uploaded = sum(len(b) for b in img.blobs.values())
    assert delta("registry_http_request_body_bytes_total", method="POST") == uploaded
    # The storage driver's calls are timed too, per operation.
    assert (
        delta(
            "registry_storage_operation_duration_seconds_count",
            driver=driver,
            operation="put",
        )
        > 0
    )
    assert (
        delta(
            "registry_storage_operation_duration_seconds_count",
            driver=driver,
            operation="read",
        )
        == 1
    )
    assert delta("registry_storage_errors_total") == 0
    assert value(after, "registry_uploads_in_progress") == 0


def test_unknown_paths_are_counted_as_unmatched(metrics_client: httpx.Client) -> None:
    client = metrics_client
    before = value(scrape(client), "registry_http_requests_total", route="unmatched", status="404")
    path = f"/no/such/{uuid.uuid4().hex}"
    assert client.get(path).status_code == 404
    samples = scrape(client)
    assert (
        value(samples, "registry_http_requests_total", route="unmatched", status="404")
        == before + 1
    )
    assert not any(path in str(s.labels) for s in samples)


def test_uploads_in_progress_counts_a_blob_being_received(
    metrics_registry: InProcessRegistry, metrics_client: httpx.Client
) -> None:
    client = metrics_client
    name = f"metrics/{uuid.uuid4().hex[:8]}"
    r = client.post(f"/v2/{name}/blobs/uploads/")
    assert r.status_code == 202
    release = threading.Event()
    result: list[int] = []

    def body() -> Iterator[bytes]:
        yield b"x" * 1000
        release.wait(30)
        yield b"y" * 1000

    def upload() -> None:
        with metrics_registry.client() as other:
            result.append(other.patch(r.headers["Location"], content=body()).status_code)

    thread = threading.Thread(target=upload)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while value(scrape(client), "registry_uploads_in_progress") != 1:
            assert time.monotonic() < deadline, "the upload never showed as in progress"
            time.sleep(0.05)
    finally:
        release.set()
        thread.join(30)
    assert result == [202]
    assert value(scrape(client), "registry_uploads_in_progress") == 0


def test_label_values_stay_bounded_after_pushes_to_many_repositories(
    metrics_client: httpx.Client,
) -> None:
    client = metrics_client

    def push_many(count: int) -> list[str]:
        names = [f"cardinality/{uuid.uuid4().hex[:12]}" for _ in range(count)]
        for i, name in enumerate(names):
            img = image(layers=1, layer_size=100)
            push_image(client, name, img, tag=f"tag-{uuid.uuid4().hex[:6]}")
            assert client.get(f"/v2/{name}/manifests/{img.digest}").status_code == 200
            assert (
                client.head(f"/v2/{name}/blobs/{sha256(b'missing' + bytes([i]))}").status_code
                == 404
            )
            assert client.get(f"/v2/{name}/tags/list").status_code == 200
        return names

    push_many(3)
    first = series(scrape(client))
    names = push_many(25)
    samples = scrape(client)
    # 25 more repositories, tags and digests: not one new series.
    assert series(samples) == first
    labels = " ".join(str(s.labels) for s in samples)
    for name in names:
        assert name.split("/")[1] not in labels
    assert "sha256:" not in labels and "tag-" not in labels


def test_storage_errors_are_counted() -> None:
    route = {"method": "GET", "route": MANIFEST_ROUTE, "status": "503"}
    with denying_s3() as endpoint:
        config = s3_config(endpoint)
        with InProcessRegistry(config, s3_driver(config)) as registry, registry.client() as client:
            before = scrape(client)
            r = client.get("/v2/some/repo/manifests/latest")
            assert r.status_code == 503
            assert r.json()["errors"][0]["code"] == "UNAVAILABLE"
            samples = scrape(client)
    errors = "registry_storage_errors_total"
    assert value(samples, errors, driver="s3") - value(before, errors, driver="s3") >= 1
    requests = "registry_http_requests_total"
    assert value(samples, requests, **route) - value(before, requests, **route) == 1


def test_metrics_are_summed_over_workers(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """With --workers N any scrape tells the total, whichever worker answers it."""
    server = start_server(request, tmp_path, workers=3)
    for _ in range(30):
        # A new connection each time, so that the requests spread over the workers.
        assert httpx.get(f"{server.url}/health/live").status_code == 200
    for _ in range(6):
        with server.client() as client:
            samples = scrape(client)
        assert value(samples, "registry_http_requests_total", route="/health/live") == 30


def test_metrics_can_be_switched_off() -> None:
    with InProcessRegistry({"metrics": {"enabled": False}}) as registry, registry.client() as c:
        r = c.get("/metrics")
    assert r.status_code == 404
    assert r.json()["errors"][0]["code"] == "UNSUPPORTED"
