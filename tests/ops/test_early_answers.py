"""A request answered before its body has arrived, against a real `registry serve`
(registry/server.py): the client gets to read the answer.

An application may answer before it has read a request's body -- 401 before any byte,
404 for an unknown upload, a quota's 403 before or in the middle of a push -- while the
client is still sending. Closing then, with bytes unread, resets the connection, and a
client still writing sees ``broken pipe`` or ``connection reset`` instead of the answer
(skopeo does: Go reports the failed write when it comes first). So the server reads and
drops the rest of the body, and only then closes (``Connection: close``) or goes on with
the next request; bounded in bytes and in time, so that a client that never ends its body
cannot hold the connection."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from registry.server import DISCARD_BYTES, DISCARD_SECONDS
from tests.auth.conftest import PASSWORD, auth_section
from tests.conftest import start_server
from tests.server import RegistryServer

QUOTAS = ("small", "chunked", "kept", "endless", "flood")
KiB = 1024
PIECE = 64 * KiB
CREDENTIALS = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> RegistryServer:
    workdir = tmp_path_factory.mktemp("early-answers")
    # a quota per test: a refused session keeps its reservation for a while
    quotas = [{"name": name, "repositories": [f"{name}/**"], "limit": "256KiB"} for name in QUOTAS]
    config = {
        "gc": {"enabled": False},
        "auth": auth_section(workdir, "basic"),
        "policy": {"quotas": quotas},
    }
    return start_server(request, workdir, config=config)


@contextmanager
def connection(server: RegistryServer) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        yield s


def start_upload(server: RegistryServer, repo: str) -> str:
    with server.client(auth=("admin", PASSWORD)) as c:
        r = c.post(f"/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202, r.text
        return r.headers["location"]


def read_response(s: socket.socket, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """One whole response (its body by Content-Length): status, headers, body."""
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, f"closed before a whole response head: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk, f"closed in the middle of a response body: {data!r}"
        body += chunk
    return int(lines[0].split(" ", 2)[1]), headers, body


def patch_head(location: str, length: int | None, *, close: bool, auth: bool = True) -> bytes:
    lines = [f"PATCH {location} HTTP/1.1", "Host: x", "Content-Type: application/octet-stream"]
    lines.append(
        f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    )
    if auth:
        lines.append(f"Authorization: {CREDENTIALS}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def send_slowly(s: socket.socket, pieces: list[bytes], pause: float) -> None:
    """Each piece after a pause: every one must be taken, none may meet a reset."""
    for i, piece in enumerate(pieces):
        time.sleep(pause)
        try:
            s.sendall(piece)
        except OSError as exc:
            raise AssertionError(f"piece {i} of {len(pieces)} after the answer: {exc!r}") from exc


def closed_cleanly(s: socket.socket, within: float) -> bool:
    """The server's side ends with a FIN (no reset) within ``within`` seconds, with
    nothing more said."""
    s.settimeout(within)
    try:
        return s.recv(1) == b""
    except TimeoutError:
        return False


def gone(s: socket.socket, within: float) -> bool:
    """The server has closed its socket (not only its sending side): a byte sent now is
    answered by a reset, which the next send reports."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            s.sendall(b"G")
        except (BrokenPipeError, ConnectionResetError):
            return True
        time.sleep(0.05)
    return False


# A request whose answer comes before its body: (repository to start an upload in, or
# None for an unknown upload; with credentials; the status; what its body says).
EARLY = {
    "quota-403": ("small/app", True, 403, b"quota 'small'"),
    "unknown-upload-404": (None, True, 404, b"BLOB_UPLOAD_UNKNOWN"),
    "no-credentials-401": ("big/app", False, 401, b"UNAUTHORIZED"),
}


def early_request(server: RegistryServer, case: str) -> tuple[str, bool, int, bytes]:
    repo, auth, status, says = EARLY[case]
    if repo is None:
        location = "/v2/big/app/blobs/uploads/0123456789abcdef0123456789abcdef"
    else:
        location = start_upload(server, repo)
    return location, auth, status, says


@pytest.mark.parametrize("case", sorted(EARLY))
def test_an_answer_before_the_body_reaches_a_client_still_sending(
    server: RegistryServer, case: str
) -> None:
    """``Connection: close`` (skopeo's way): the rest of the body is taken, pieces far
    apart, and the connection then ends with a FIN, not a reset."""
    location, auth, status, says = early_request(server, case)
    size = 8 * PIECE
    with connection(server) as s:
        s.sendall(patch_head(location, size, close=True, auth=auth) + b"x" * PIECE)
        got, headers, body = read_response(s)
        assert got == status and says in body, body
        assert headers.get("connection") == "close"
        send_slowly(s, [b"x" * PIECE] * 7, pause=0.3)
        assert closed_cleanly(s, within=5)
        assert gone(s, within=1.5)  # closed once the body was in, long before the deadline


def test_a_quota_refusal_mid_body_reaches_a_client_still_sending(server: RegistryServer) -> None:
    """A body of unknown length, refused by the quota once 256 KiB have passed: the
    application stops reading in the middle of the body."""
    location = start_upload(server, "chunked/app")
    with connection(server) as s:
        s.sendall(patch_head(location, None, close=True) + chunked(b"x" * PIECE) * 5)
        got, _, body = read_response(s)
        assert got == 403 and b"quota 'chunked'" in body, body
        send_slowly(s, [chunked(b"y" * PIECE)] * 4 + [b"0\r\n\r\n"], pause=0.3)
        assert closed_cleanly(s, within=5)
        assert gone(s, within=1.5)


def test_a_kept_connection_serves_the_next_request_after_the_unread_body(
    server: RegistryServer,
) -> None:
    """Keep-alive: the rest of the answered request's body is dropped, and the next
    request on the connection is served."""
    location = start_upload(server, "kept/app")
    with connection(server) as s:
        s.sendall(patch_head(location, 6 * PIECE, close=False))
        got, headers, body = read_response(s)
        assert got == 403 and "connection" not in headers, headers
        send_slowly(s, [b"x" * PIECE] * 6, pause=0.3)
        s.sendall(f"GET /v2/ HTTP/1.1\r\nHost: x\r\nAuthorization: {CREDENTIALS}\r\n\r\n".encode())
        got, _, body = read_response(s)
        assert got == 200, body


def test_an_answer_before_100_continue_closes_the_connection(server: RegistryServer) -> None:
    """``Expect: 100-continue`` (curl's way with large bodies) answered without asking for
    the body: the client may send it or not, so the connection cannot serve another
    request. The answer says close, its end is marked at once (curl stops there), and
    a client that sends the body anyway is not reset for it."""
    location = start_upload(server, "big/continue")
    head = patch_head(location, 4 * PIECE, close=False, auth=False)
    with connection(server) as s:
        s.sendall(head.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"))
        got, headers, body = read_response(s)
        assert got == 401 and headers.get("connection") == "close", (headers, body)
        assert closed_cleanly(s, within=5)  # the server's side ended after the answer
        send_slowly(s, [b"x" * PIECE] * 4, pause=0.3)


def test_a_body_that_never_ends_is_not_waited_for(server: RegistryServer) -> None:
    """After the answer the client keeps trickling bytes of a body it never finishes:
    the connection is closed once DISCARD_SECONDS have passed."""
    location = start_upload(server, "endless/app")
    with connection(server) as s:
        s.sendall(patch_head(location, 100 * PIECE, close=False))
        assert read_response(s)[0] == 403
        answered = time.monotonic()
        ended = None
        while time.monotonic() - answered < DISCARD_SECONDS + 10:
            try:
                s.sendall(b"x" * 100)
                s.settimeout(0.25)
                if s.recv(1) == b"":
                    ended = time.monotonic()
                    break
            except TimeoutError:
                continue
            except OSError:
                ended = time.monotonic()
                break
    assert ended is not None, "still open"
    assert DISCARD_SECONDS - 0.5 <= ended - answered <= DISCARD_SECONDS + 5


def test_a_flood_after_the_answer_is_read_only_so_far(server: RegistryServer) -> None:
    """A client that sends as fast as it can after the answer: the server reads about
    DISCARD_BYTES of it (loopback would carry gigabytes in the time), then lets the
    client wait, and closes at DISCARD_SECONDS."""
    location = start_upload(server, "flood/app")
    sent = 0
    ended: list[float] = []
    with connection(server) as s:
        s.sendall(patch_head(location, 1 << 40, close=False))
        assert read_response(s)[0] == 403
        answered = time.monotonic()
        block = b"z" * (1 << 20)

        def flood() -> None:
            nonlocal sent
            s.settimeout(DISCARD_SECONDS + 10)
            try:
                while time.monotonic() - answered < DISCARD_SECONDS + 10:
                    sent += s.send(block)
            except OSError:
                ended.append(time.monotonic())

        thread = threading.Thread(target=flood)
        thread.start()
        thread.join(DISCARD_SECONDS + 15)
    assert ended, "still open"
    assert DISCARD_SECONDS - 0.5 <= ended[0] - answered <= DISCARD_SECONDS + 5
    # what the sockets' buffers hold on both sides comes on top of what the server read
    assert sent < DISCARD_BYTES + (64 << 20), sent
