"""Log forging: whatever a client puts in a path or a user name, every record stays one
line in the text log, and a forged "issued a token" line cannot appear."""

from __future__ import annotations

import json
import logging
import re
import socket
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from registry.request_log import JsonFormatter, TextFormatter, escape_controls
from tests.auth.conftest import auth_section
from tests.conftest import start_server
from tests.server import RegistryServer

FAKE = "2026-01-01T00:00:00 info registry.auth: issued a token to 'admin' from 10.0.0.1"
# A line of the text log starts with its timestamp; anything else is a continuation.
RECORD = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d ")


def raw_get(server: RegistryServer, path: str, headers: str = "") -> int:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        head = f"GET {path} HTTP/1.1\r\nHost: {server.host}\r\n{headers}"
        s.sendall(f"{head}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def forged(text: str) -> str:
    return quote(text, safe="")


def assert_not_forged(log: str) -> None:
    lines = log.splitlines()
    # The start-up block comes first, from the configuration, before any record.
    first = next((i for i, line in enumerate(lines) if RECORD.match(line)), len(lines))
    for line in lines[first:]:
        assert not line.startswith(FAKE[:20]), line
        assert RECORD.match(line) or line.startswith("    "), line


def test_encoded_newlines_in_paths_stay_on_their_line(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    workdir = tmp_path / "registry"
    workdir.mkdir()
    config = {"log": {"format": "text"}, "auth": auth_section(workdir, "token")}
    config["auth"]["token"] = {"key_file": str(workdir / "token.pem")}
    server = start_server(request, workdir, config=config)
    payload = forged("\n" + FAKE + "\n")
    paths = [
        f"/v2/public/app/manifests/v1{payload}",  # the access log and the 401 refusal
        f"/v2/public/app/blobs/uploads/x{forged(chr(0x1B) + '[2J')}",  # a terminal escape
        f"/nowhere{payload}",
    ]
    for path in paths:
        assert raw_get(server, path) in (400, 401, 404)
    bad_token = "Authorization: Bearer x.y.z\r\n"
    assert raw_get(server, f"/v2/public/app/manifests/v2{payload}", bad_token) == 401
    server.stop()
    log = server.log()
    assert "\x1b" not in log
    assert_not_forged(log)
    assert "\\x0a" + FAKE in log  # it is there, escaped, inside the real record
    refusals = [line for line in log.splitlines() if "registry.auth: refused" in line]
    assert sum("\\x0a" + FAKE in line for line in refusals) == 2  # no token; a bad one


def test_text_formatter_escapes_every_field_and_message() -> None:
    record = logging.LogRecord("registry.access", logging.INFO, __file__, 1, "%s", ("x",), None)
    record.request = {
        "method": "GET\r\n",
        "path": '/v2/a"\n' + FAKE,
        "status": 200,
        "bytes_in": 0,
        "bytes_out": 0,
        "duration_ms": 1.0,
        "request_id": "id",
        "client": "10.0.0.1\u2028fake",
    }
    line = TextFormatter().format(record)
    assert "\n" not in line and "\r" not in line and "\u2028" not in line
    assert '\\"' in line and "\\x0a" + FAKE in line and "\\u2028" in line

    record = logging.LogRecord(
        "registry.auth", logging.WARNING, __file__, 1, "user %s", ("a\nb\x85c",), None
    )
    assert TextFormatter().format(record).endswith("user a\\x0ab\\x85c")


def test_tracebacks_cannot_start_a_record() -> None:
    try:
        raise ValueError("bad name\n" + FAKE)
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("registry", logging.ERROR, __file__, 1, "boom", (), exc_info)
    lines = TextFormatter().format(record).splitlines()
    assert RECORD.match(lines[0])
    assert all(line.startswith("    ") for line in lines[1:])


def test_json_lines_stay_single_lines() -> None:
    record = logging.LogRecord(
        "registry.auth", logging.WARNING, __file__, 1, "user %s", ("a\nb\u2028c",), None
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line and "\u2028" not in line
    assert json.loads(line)["message"] == "user a\nb\u2028c"


@pytest.mark.parametrize("char", [chr(c) for c in [*range(0x20), 0x7F, 0x85, 0x9B]])
def test_every_control_character_is_escaped(char: str) -> None:
    assert escape_controls(f"a{char}b") == f"a\\x{ord(char):02x}b"
