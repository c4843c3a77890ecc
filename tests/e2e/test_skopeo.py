"""Round trips with the real skopeo client, compared byte for byte."""

from __future__ import annotations

import filecmp
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import BACKENDS, require_tool, start_server
from tests.images import Image, image, index, sha256, write_dir_layout, write_oci_layout
from tests.server import RegistryServer


def skopeo(*args: str) -> None:
    cmd = [require_tool("skopeo"), "--insecure-policy", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout}\n{done.stderr}"


def same_tree(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a) for p in (a / "blobs").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in (b / "blobs").rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert filecmp.cmp(a / rel, b / rel, shallow=False), rel


@pytest.fixture(scope="module", params=BACKENDS)
def skopeo_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> RegistryServer:
    return start_server(request, tmp_path_factory.mktemp("skopeo"), request.param)


@pytest.mark.parametrize(
    "make",
    [
        lambda: image(layers=3, layer_size=300_000),
        lambda: index([image(layers=2, layer_size=50_000), image(layers=2, layer_size=50_000)]),
        # Larger than S3's smallest part: pushed in parts (streamed on S3 when the
        # requests say their length, storage_backends/socket_put.py).
        lambda: image(layers=1, layer_size=12 << 20),
    ],
    ids=["oci-image", "multi-platform-index", "large-layer"],
)
def test_copy_in_and_out_is_byte_identical(
    skopeo_server: RegistryServer, tmp_path: Path, make: Callable[[], Image]
) -> None:
    img: Image = make()
    src, out = tmp_path / "src", tmp_path / "out"
    write_oci_layout(src, img)
    ref = f"docker://{skopeo_server.host}/skopeo/{tmp_path.name.lower()}:v1"
    skopeo(
        "copy", "--all", "--preserve-digests", "--dest-tls-verify=false", f"oci:{src}:latest", ref
    )
    skopeo(
        "copy", "--all", "--preserve-digests", "--src-tls-verify=false", ref, f"oci:{out}:latest"
    )
    same_tree(src, out)


def test_docker_schema2_round_trip(skopeo_server: RegistryServer, tmp_path: Path) -> None:
    img = image(layers=2, docker=True, layer_size=100_000)
    src, out = tmp_path / "src", tmp_path / "out"
    write_dir_layout(src, img)
    ref = f"docker://{skopeo_server.host}/skopeo/docker:v1"
    skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", f"dir:{src}", ref)
    skopeo("copy", "--preserve-digests", "--src-tls-verify=false", ref, f"dir:{out}")
    for f in sorted(p.name for p in src.iterdir()):
        assert (out / f).read_bytes() == (src / f).read_bytes(), f


def test_inspect_and_list_tags(skopeo_server: RegistryServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_oci_layout(src, image(layers=1))
    for tag in ("a", "b"):
        skopeo(
            "copy",
            "--dest-tls-verify=false",
            f"oci:{src}:latest",
            f"docker://{skopeo_server.host}/listing:{tag}",
        )
    out = subprocess.run(
        [
            require_tool("skopeo"),
            "list-tags",
            "--tls-verify=false",
            f"docker://{skopeo_server.host}/listing",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"a"' in out and '"b"' in out


def test_chunked_upload_continues_after_restart(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server = start_server(request, tmp_path)
    data = os.urandom(3 * 1024 * 1024)
    with server.client() as client:
        r = client.post("/v2/resume/blobs/uploads/")
        location = r.headers["Location"]
        r = client.patch(location, content=data[:1_000_000], headers={"Content-Range": "0-999999"})
        assert r.status_code == 202
    server.restart()
    with server.client() as client:
        r = client.get(location)
        assert r.status_code == 204
        assert r.headers["Range"] == "0-999999"
        r = client.patch(
            location,
            content=data[1_000_000:],
            headers={"Content-Range": f"1000000-{len(data) - 1}"},
        )
        assert r.status_code == 202
        r = client.put(location, params={"digest": sha256(data)})
        assert r.status_code == 201, r.text
        assert client.get(f"/v2/resume/blobs/{sha256(data)}").content == data
