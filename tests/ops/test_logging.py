"""Request ids (echoed, logged, replaced when unsafe) and no secret in any log line."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import start_server
from tests.images import image, push_image


def access_lines(log: str) -> list[dict[str, object]]:
    lines = []
    for line in log.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("logger") == "registry.access":
                lines.append(entry)
    return lines


def test_request_id_is_echoed_logged_and_replaced_when_unsafe(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server = start_server(request, tmp_path, config={"log": {"format": "json"}})
    given = f"ops-{uuid.uuid4().hex}"
    with server.client() as client:
        r = client.get("/v2/", headers={"X-Request-Id": given})
        assert r.headers["X-Request-Id"] == given
        unsafe = client.get("/v2/", headers={"X-Request-Id": 'evil" id; drop'})
        replaced = unsafe.headers["X-Request-Id"]
        assert re.fullmatch(r"[0-9a-f]{32}", replaced)
        generated = {client.get("/health/live").headers["X-Request-Id"] for _ in range(3)}
        assert len(generated) == 3
        # Errors carry the id too: it is what an operator asks a user for.
        missing = client.get("/v2/no/such/manifests/x", headers={"X-Request-Id": "err-1"})
        assert missing.status_code == 404 and missing.headers["X-Request-Id"] == "err-1"
    server.stop()
    # JSON through and through: uvicorn's start and stop lines too.
    for line in server.log().splitlines():
        assert isinstance(json.loads(line), dict), line
    logged = {str(e["request_id"]): e for e in access_lines(server.log())}
    assert logged[given]["path"] == "/v2/" and logged[given]["status"] == 200
    assert logged["err-1"]["status"] == 404
    assert replaced in logged and "evil" not in server.log()
    assert generated <= set(logged)


def test_no_secret_reaches_the_log(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    secrets = {
        "s3 secret key": f"S3SECRET{uuid.uuid4().hex}",
        "s3 access key": f"AKIA{uuid.uuid4().hex[:16].upper()}",
        "bearer token": f"eyJ{uuid.uuid4().hex}",
        "basic password": f"pw-{uuid.uuid4().hex}",
        "query token": f"qt-{uuid.uuid4().hex}",
        "cookie": f"ck-{uuid.uuid4().hex}",
    }
    server = start_server(
        request,
        tmp_path,
        config={"log": {"format": "json", "level": "debug"}},
        env={
            "REGISTRY_STORAGE_S3_SECRET_ACCESS_KEY": secrets["s3 secret key"],
            "REGISTRY_STORAGE_S3_ACCESS_KEY_ID": secrets["s3 access key"],
        },
    )
    basic = base64.b64encode(f"alice:{secrets['basic password']}".encode()).decode()
    with server.client() as client:
        name = f"secrets/{uuid.uuid4().hex[:8]}"
        for auth in (f"Bearer {secrets['bearer token']}", f"Basic {basic}"):
            headers = {"Authorization": auth, "Cookie": f"session={secrets['cookie']}"}
            push_image(client, name, image(), tag="v1")
            client.get(f"/v2/{name}/manifests/v1", headers=headers)
            client.get(f"/v2/{name}/manifests/nope", headers=headers)  # an error path
            client.get(f"/v2/{name}/tags/list?token={secrets['query token']}", headers=headers)
            client.post(f"/v2/{name}/blobs/uploads/?digest=sha256:bad", headers=headers)
            client.get("/nowhere", headers=headers)
    server.stop()
    log = server.log()
    assert len(access_lines(log)) >= 12  # the requests were logged, just not their secrets
    for what, secret in secrets.items():
        assert secret not in log, what
    assert basic not in log


def test_config_errors_do_not_echo_secret_values(tmp_path: Path) -> None:
    secret = f"S3SECRET{uuid.uuid4().hex}"
    config = tmp_path / "config.yml"
    # A secret given the wrong type: pydantic's own message would quote it.
    config.write_text(f"storage:\n  s3:\n    secret_access_key: [{secret}]\n")
    for command in (["check-config", str(config)], ["serve", "--config", str(config)]):
        result = subprocess.run(
            [sys.executable, "-m", "registry", *command],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert result.returncode in (1, 2), result
        output = result.stdout + result.stderr
        assert "config.yml:3:24" in output and "storage.s3.secret_access_key" in output
        assert secret not in output
