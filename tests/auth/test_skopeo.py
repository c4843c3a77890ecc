"""The real skopeo client through the token flow (401 challenge, token from the built-in
service with --creds, retry with Bearer) and through Basic mode."""

from __future__ import annotations

import filecmp
import os
import subprocess
from pathlib import Path

import pytest

from tests.auth.conftest import PASSWORD, unique
from tests.conftest import require_tool
from tests.images import image, write_oci_layout
from tests.server import RegistryServer


def skopeo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [require_tool("skopeo"), "--insecure-policy", *args]
    # No credentials from the machine's auth files: only what the test passes.
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def ok(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, f"{done.args}\n{done.stdout}\n{done.stderr}"


def same_blobs(a: Path, b: Path) -> None:
    files = sorted(p.relative_to(a) for p in (a / "blobs").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in (b / "blobs").rglob("*") if p.is_file())
    for rel in files:
        assert filecmp.cmp(a / rel, b / rel, shallow=False), rel


def push_and_pull(tmp_path: Path, layout: Path, ref: str, pusher: str, puller: str) -> None:
    """Copy ``layout`` to ``ref`` as ``pusher``, back as ``puller``; compare the blobs."""
    ok(
        skopeo(
            tmp_path,
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            f"{pusher}:{PASSWORD}",
            f"oci:{layout}:latest",
            ref,
        )
    )
    out = tmp_path / "out"
    ok(
        skopeo(
            tmp_path,
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--src-creds",
            f"{puller}:{PASSWORD}",
            ref,
            f"oci:{out}:latest",
        )
    )
    same_blobs(layout, out)


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    write_oci_layout(src, image(layers=2, layer_size=50_000))
    return src


def test_push_and_pull_with_creds_through_the_token_flow(
    token_server: RegistryServer, tmp_path: Path, layout: Path
) -> None:
    ref = f"docker://{token_server.host}/{unique('team-a')}:v1"
    push_and_pull(tmp_path, layout, ref, pusher="alice", puller="bob")
    log = token_server.log()
    assert "issued a token to 'alice'" in log and "issued a token to 'bob'" in log
    assert PASSWORD not in log


def test_a_reader_cannot_push_with_skopeo(
    token_server: RegistryServer, tmp_path: Path, layout: Path
) -> None:
    ref = f"docker://{token_server.host}/{unique('team-a')}:v1"
    done = skopeo(
        tmp_path,
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        f"bob:{PASSWORD}",
        f"oci:{layout}:latest",
        ref,
    )
    assert done.returncode != 0
    assert "denied" in done.stderr.lower()


def test_wrong_password_fails_with_skopeo(
    token_server: RegistryServer, tmp_path: Path, layout: Path
) -> None:
    ref = f"docker://{token_server.host}/{unique('team-a')}:v1"
    done = skopeo(
        tmp_path,
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "frank:wrong",
        f"oci:{layout}:latest",
        ref,
    )
    assert done.returncode != 0
    # Parallel blob checks may each ask for a token: the later ones meet the login limit.
    assert "unauthorized" in done.stderr.lower() or "too many" in done.stderr.lower()


def test_anonymous_inspect_of_a_public_image(
    token_server: RegistryServer, tmp_path: Path, layout: Path
) -> None:
    ref = f"docker://{token_server.host}/{unique('public')}:v1"
    ok(
        skopeo(
            tmp_path,
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            f"admin:{PASSWORD}",
            f"oci:{layout}:latest",
            ref,
        )
    )
    ok(skopeo(tmp_path, "inspect", "--raw", "--tls-verify=false", "--no-creds", ref))
    private = f"docker://{token_server.host}/{unique('team-a')}:v1"
    done = skopeo(tmp_path, "inspect", "--raw", "--tls-verify=false", "--no-creds", private)
    assert done.returncode != 0


def test_push_and_pull_in_basic_mode(
    basic_server: RegistryServer, tmp_path: Path, layout: Path
) -> None:
    ref = f"docker://{basic_server.host}/{unique('team-a')}:v1"
    push_and_pull(tmp_path, layout, ref, pusher="alice", puller="dave")
