"""docker-compose.yml: each registry service's configuration is valid as the container
reads it, the pieces agree with each other, and the `s3` profile's registry (token auth)
works end to end, on the test S3 server in place of MinIO."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from registry.config_check import check_config
from tests.conftest import require_tool, start_server
from tests.images import image, write_oci_layout

ROOT = Path(__file__).resolve().parents[2]
_DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return doc


def environment(service: dict[str, Any]) -> dict[str, str]:
    """The service's variables, ${VAR:-default} resolved to the default."""
    return {k: _DEFAULT.sub(r"\2", str(v)) for k, v in (service.get("environment") or {}).items()}


def image_config_path() -> str:
    match = re.search(r"REGISTRY_CONFIG_FILE=(\S+)", (ROOT / "Dockerfile").read_text())
    assert match is not None
    return match.group(1)


def config_file_of(service: dict[str, Any]) -> Path:
    """The YAML the container reads: a mounted file, or the image's own."""
    volumes: list[str] = service.get("volumes", [])
    for volume in volumes:
        source, _, rest = volume.partition(":")
        if rest.split(":")[0] == image_config_path():
            return ROOT / source
    return ROOT / "deploy/config.yml"


@pytest.mark.parametrize("name", ["registry", "registry-s3"])
def test_each_registry_service_has_a_valid_configuration(name: str) -> None:
    service = compose()["services"][name]
    result = check_config(config_file_of(service), environment(service))
    assert result.problems == [] and result.config is not None
    config = result.config
    assert f":{config.http.port}" in service["ports"][0]
    assert any(v.endswith(":/var/lib/registry") for v in service["volumes"])
    grace = float(str(service["stop_grace_period"]).removesuffix("s"))
    assert grace > config.http.graceful_timeout


def test_s3_profile_pieces_agree() -> None:
    services = compose()["services"]
    s3 = check_config(config_file_of(services["registry-s3"]), environment(services["registry-s3"]))
    assert s3.config is not None
    assert s3.config.storage.driver == "s3" and s3.config.auth.mode == "token"
    init = services["minio-init"]
    assert f"mb --ignore-existing minio/{s3.config.storage.s3.bucket}" in init["command"][0]
    assert s3.config.storage.s3.endpoint_url == "http://minio:9000"
    minio_env, registry_env = environment(services["minio"]), environment(services["registry-s3"])
    assert registry_env["REGISTRY_STORAGE_S3_ACCESS_KEY_ID"] == minio_env["MINIO_ROOT_USER"]
    assert registry_env["REGISTRY_STORAGE_S3_SECRET_ACCESS_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]
    assert services["registry-s3"]["depends_on"]["minio-init"]["condition"] == (
        "service_completed_successfully"
    )
    for name in ("minio", "minio-init", "registry-s3"):
        assert services[name]["profiles"] == ["s3"]
    assert "profiles" not in services["registry"]


@pytest.mark.s3
def test_s3_profile_registry_pushes_and_pulls_with_token_auth(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The walk-through of docs/operations.md, with the test's RGW standing in for MinIO."""
    skopeo = require_tool("skopeo")
    rgw = request.getfixturevalue("rgw")
    config: dict[str, Any] = yaml.safe_load((ROOT / "deploy/registry-s3.yml").read_text())
    # The container's paths become the test's; everything else is the file as shipped.
    config["auth"]["htpasswd"] = str(tmp_path / "htpasswd")
    config["auth"]["token"]["key_file"] = str(tmp_path / "token-signing-key.pem")
    del config["http"]
    s3 = rgw.s3_config(prefix=f"t-{uuid.uuid4().hex[:12]}")
    env = {
        "REGISTRY_STORAGE_S3_ENDPOINT_URL": s3.endpoint_url,
        "REGISTRY_STORAGE_S3_BUCKET": s3.bucket,
        "REGISTRY_STORAGE_S3_PREFIX": s3.prefix,
        "REGISTRY_STORAGE_S3_ACCESS_KEY_ID": s3.access_key_id,
        "REGISTRY_STORAGE_S3_SECRET_ACCESS_KEY": s3.secret_access_key,
    }
    password = f"pw-{uuid.uuid4().hex}"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "registry",
            "user",
            "add",
            "alice",
            "--password-stdin",
            "--file",
            config["auth"]["htpasswd"],
        ],
        input=password + "\n",
        text=True,
        check=True,
        capture_output=True,
        timeout=60,
        env=base_env,
    )
    server = start_server(request, tmp_path / "server", config=config, env=env)
    # Probes and scrapers carry no credentials: the container's HEALTHCHECK must pass.
    with server.client() as client:
        assert client.get("/v2/").status_code == 401
        assert client.get("/health/ready").status_code == 200
        assert client.get("/metrics").status_code == 200
    img = image()
    write_oci_layout(tmp_path / "src", img, "v1")
    dest = f"docker://{server.host}/team/app:v1"
    anonymous = subprocess.run(
        [skopeo, "copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'src'}:v1", dest],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert anonymous.returncode != 0
    subprocess.run(
        [
            skopeo,
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            f"alice:{password}",
            f"oci:{tmp_path / 'src'}:v1",
            dest,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    raw = subprocess.run(
        [skopeo, "inspect", "--raw", "--tls-verify=false", "--creds", f"alice:{password}", dest],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    assert raw == img.manifest
    server.stop()
    assert password not in server.log()
