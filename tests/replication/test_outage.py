"""A target that is down while images are pushed receives them all once it is back, in
order per repository, without anyone running anything again; meanwhile the status shows
the rule retrying, with the reason and the lag."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.images import image, push_image
from tests.replication.conftest import arrived, push_rule, serve, site, wait_until
from tests.server import RegistryServer

REPOSITORIES = ("team/web", "team/api")
PER_REPOSITORY = 10


def test_a_target_down_while_20_images_are_pushed_gets_all_in_order(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    b = serve(request, tmp_path / "b", {})
    a = serve(request, tmp_path / "a", site([push_rule("to-b", b.url)]))
    b.stop()
    pushed: dict[str, list[bytes]] = {r: [] for r in REPOSITORIES}
    with a.client() as c:
        for i in range(PER_REPOSITORY):
            for repository in REPOSITORIES:
                img = image(layers=2)
                push_image(c, repository, img, f"v{i:02d}")
                push_image(c, repository, img, "latest")  # moves with every push
                pushed[repository].append(img.manifest)

        def retrying() -> dict[str, object] | None:
            rule = c.get("/api/replication").json()["rules"][0]
            events = rule["events"]
            return events if events["attempts"] >= 2 and events["queued"] > 0 else None

        events = wait_until(retrying, what="the rule retrying while B is down")
        assert "connect" in str(events["error"]) and float(str(events["lag_seconds"])) > 0

        def lagging() -> bool:
            for line in c.get("/metrics").text.splitlines():
                if line.startswith('registry_replication_lag_seconds{rule="to-b"}'):
                    return float(line.split()[-1]) > 0
            return False

        wait_until(lagging, what="the lag metric")
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "registry",
            "events",
            "list",
            "--consumer",
            "replication/to-b",
            "--config",
            str(a.config_file),
            "--data-dir",
            str(a.data_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert listed.startswith("replication/to-b: ") and "failing: " in listed

    b.start()  # the same port and data: the same site, back

    with b.client() as c:
        for repository, manifests in pushed.items():
            for i, body in enumerate(manifests):
                wait_until(
                    lambda r=repository, t=f"v{i:02d}", m=body: arrived(c, r, t, m),
                    timeout=60,
                    what=f"{repository}:v{i:02d}",
                )
            assert arrived(c, repository, "latest", manifests[-1])
    for repository in REPOSITORIES:
        assert written_in_order(b, repository)
    with a.client() as c:
        rule = c.get("/api/replication").json()["rules"][0]
    assert rule["failing"] == 0 and rule["events"]["attempts"] == 0
    # Each vNN, and "latest" once per repository: it named the last image already when
    # its first event came through (a copy copies what a tag names now).
    assert rule["totals"]["artifacts"] == len(REPOSITORIES) * (PER_REPOSITORY + 1)


def written_in_order(server: RegistryServer, repository: str) -> bool:
    """B's tag files of ``repository`` were written in the order of the pushes to A."""
    tags = server.data_dir / "repositories" / repository / "_manifests" / "tags"
    times = [(tags / f"v{i:02d}").stat().st_mtime_ns for i in range(PER_REPOSITORY)]
    return times == sorted(times)
