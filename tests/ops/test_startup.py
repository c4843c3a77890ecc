"""What `registry serve` says when it starts: one block, printed once by the parent
process, with the facts an operator needs and the warnings they must see."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from registry.banner import StartFacts, banner_lines, registry_version
from registry.config import Config
from tests.server import RegistryServer


def block(log: str) -> list[str]:
    """The banner's lines in a server log."""
    lines = log.splitlines()
    start = lines.index("registry starting")
    end = start + 1
    while end < len(lines) and lines[end].startswith("  "):
        end += 1
    return lines[start:end]


def test_the_block_is_printed_once_for_all_workers(tmp_path: Path) -> None:
    config = {
        "auth": {
            "mode": "token",
            "htpasswd": str(tmp_path / "htpasswd"),
            "token": {"key_file": str(tmp_path / "key.pem")},
        },
        "gc": {"interval": "30m", "grace_period": "2h"},
    }
    (tmp_path / "htpasswd").write_text("")
    server = RegistryServer(tmp_path, config, workers=2)
    server.start()
    try:
        log = server.log()
        assert log.count("registry starting") == 1
        assert block(log) == [
            "registry starting",
            f"  version    {registry_version()}",
            f"  listening  http://127.0.0.1:{server.port} (2 workers)",
            f"  storage    filesystem {server.data_dir}",
            "  auth       token, built-in token service (signing key generated in "
            f"{tmp_path}/key.pem); users file {tmp_path}/htpasswd",
            "  gc         every 30m, grace period 2h",
        ]
        server.restart()
        assert block(server.log().rsplit("Finished server process", 1)[1])[4] == (
            f"  auth       token, built-in token service (key {tmp_path}/key.pem); "
            f"users file {tmp_path}/htpasswd"
        )
    finally:
        server.stop()


def test_an_unreachable_storage_is_a_warning_not_a_stop(tmp_path: Path) -> None:
    s3 = {
        "bucket": "registry",
        "endpoint_url": "http://127.0.0.1:9",  # discard: nothing listens
        "access_key_id": "id",
        "secret_access_key": "secret",
    }
    server = RegistryServer(tmp_path, {"storage": {"driver": "s3", "s3": s3}})
    server.start()
    try:
        lines = block(server.log())
        assert lines[3] == "  storage    s3 bucket registry at http://127.0.0.1:9"
        assert lines[-1].startswith(
            '  warning: the storage does not answer (s3: Could not connect to the endpoint URL: "'
        )
        assert lines[-1].endswith(
            "starting anyway: pushes and pulls fail and /health/ready answers 503 until it does"
        )
        with server.client() as c:
            assert c.get("/health/ready").status_code == 503
    finally:
        server.stop()


def test_a_json_log_gets_the_block_as_json(tmp_path: Path) -> None:
    server = RegistryServer(tmp_path, {"log": {"format": "json"}})
    server.start()
    try:
        with server.client() as c:
            assert c.get("/v2/").status_code == 200
        entries = [json.loads(line) for line in server.log().splitlines()]  # nothing but JSON
        (start,) = [e for e in entries if e.get("message") == "starting"]
        assert start["storage"] == f"filesystem {server.data_dir}"
        assert start["listening"] == f"http://127.0.0.1:{server.port} (1 worker)"
    finally:
        server.stop()


def rows_and_warnings(**section: object) -> tuple[dict[str, str], list[str]]:
    rows, warnings = banner_lines(Config.model_validate(section), StartFacts())
    return dict(rows), warnings


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "registry.example.com"])
def test_an_open_registry_is_a_warning(host: str) -> None:
    _, warnings = rows_and_warnings(http={"host": host})
    assert warnings == [
        "this registry is open: anyone who reaches port 5000 may push and delete "
        "(auth.mode: none); set up auth (docs/auth.md) or listen on 127.0.0.1 (--host)"
    ]


@pytest.mark.parametrize(
    "section",
    [
        {"http": {"host": "127.0.0.1"}},
        {"http": {"host": "::1"}},
        {"http": {"host": "localhost"}},
        {"storage": {"readonly": True}},
        {"auth": {"mode": "basic", "htpasswd": "htpasswd"}},
    ],
)
def test_no_warning_on_loopback_with_auth_or_read_only(section: dict[str, object]) -> None:
    assert rows_and_warnings(**section)[1] == []


def test_rows_name_modes_and_gc() -> None:
    rows, warnings = rows_and_warnings(
        storage={"delete": {"enabled": False}}, gc={"enabled": False}, http={"tls_cert": None}
    )
    assert rows["storage"].endswith(", deletes off")
    assert rows["gc"] == "off in the server (`registry gc` collects on demand)"
    assert warnings == [
        "this registry is open: anyone who reaches port 5000 may push (auth.mode: none); "
        "set up auth (docs/auth.md) or listen on 127.0.0.1 (--host)"
    ]
    rows, _ = rows_and_warnings(
        auth={"mode": "basic", "users": {"a": {"password_hash": "$2b$04$" + "a" * 53}}}
    )
    assert rows["auth"] == "basic; 1 user in the configuration"
    assert json.dumps(rows)  # plain strings: the JSON log carries them as they are
