"""The cache is not an open proxy, and local auth rules: an unknown ``ns``, an ``ns``
naming an unconfigured port, and crafted names are refused before any upstream is
contacted; cached repositories need grants like any other (also through ``ns``); pushes
into a cached namespace are refused unless it is writable. In-process caches."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.asgi_registry import InProcessRegistry
from tests.auth.conftest import PASSWORD, auth_section
from tests.images import OCI_INDEX, OCI_MANIFEST, image, push_image
from tests.proxy.conftest import Upstreams, repo_name, upstream_entry

ACCEPT = {"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}
MakeCache = Callable[..., InProcessRegistry]


class Listener:
    """A port that counts the connections made to it (none expected)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    port = Listener()
    yield port
    port.close()


def nothing_reached_an_upstream(upstreams: Upstreams) -> None:
    assert upstreams.reg.seen == [] and upstreams.dist.seen == []


def test_unknown_ns_and_unconfigured_ports_are_refused_without_a_connection(
    upstreams: Upstreams, in_process_cache: MakeCache, listener: Listener
) -> None:
    cache = in_process_cache()
    repo = repo_name()
    reg_port = upstreams.reg.port
    with cache.client() as c:
        for ns in (
            "docker.io",
            f"127.0.0.1:{listener.port}",
            f"localhost:{reg_port}",  # the upstream's port, under a name not configured
            f"127.0.0.2:{reg_port}",
            f"127.0.0.1:{reg_port}/",
            f"127.0.0.1:{reg_port}@127.0.0.1:{listener.port}",
        ):
            for method, path in (
                ("GET", f"/v2/{repo}/manifests/v1"),
                ("HEAD", f"/v2/{repo}/manifests/v1"),
                ("GET", f"/v2/{repo}/blobs/sha256:{'a' * 64}"),
                ("GET", f"/v2/{repo}/referrers/sha256:{'a' * 64}"),
                ("GET", f"/v2/{repo}/tags/list"),
            ):
                r = c.request(method, path, params={"ns": ns})
                assert r.status_code == 404, (ns, path, r.status_code)
                if method == "GET":
                    assert r.json()["errors"][0]["code"] == "NAME_UNKNOWN"
    assert listener.accepted == 0
    nothing_reached_an_upstream(upstreams)


@pytest.mark.parametrize(
    "path",
    [
        "/v2/reg/../../etc/manifests/v1",
        "/v2/reg/%2e%2e/%2e%2e/secret/manifests/v1",
        "/v2/reg/x/%2e%2e/%2e%2e/y/blobs/sha256:" + "a" * 64,
        "/v2/reg/Upper/manifests/v1",
        "/v2/reg/x/manifests/..%2f..%2fv2",
        "/v2/reg/x/blobs/sha256:..%2f..%2fetc",
        "/v2/reg/x/referrers/sha256:" + "a" * 64 + "%2f..",
        "/v2/reg/x/manifests/v1%3fns=docker.io",
        "/v2/../reg/x/manifests/v1",
        "/v2/library/../x/manifests/v1?ns={reg}",
        "/v2/x/manifests/v1?ns={reg}&ns={dist}",
        "/v2/x/manifests/v1?ns={reg}%2f..",
        "/v2/x/blobs/uploads/?ns={reg}",
        "/v2/x//manifests/v1?ns={reg}",
        "/v2/_catalog/manifests/v1?ns={reg}",
    ],
)
def test_crafted_names_are_refused_without_a_connection(
    upstreams: Upstreams, in_process_cache: MakeCache, path: str
) -> None:
    cache = in_process_cache()
    target = path.format(reg=upstreams.reg.host, dist=upstreams.dist.host)
    status, body = cache.raw_request("GET", target)
    assert 400 <= status < 500 and status != 401, (status, body)
    nothing_reached_an_upstream(upstreams)


def test_pushes_into_a_cached_namespace_are_refused_unless_writable(
    upstreams: Upstreams, in_process_cache: MakeCache
) -> None:
    writable = upstream_entry("local", upstreams.dist.url, hosts=["local.invalid"], writable=True)
    cache = in_process_cache(writable)
    img = image(layers=1)
    with cache.client() as c:
        for method, path in (
            ("POST", "/v2/dist/app/blobs/uploads/"),
            ("PUT", "/v2/dist/app/manifests/v1"),
            ("DELETE", f"/v2/dist/app/manifests/{img.digest}"),
            ("DELETE", f"/v2/dist/app/blobs/{img.digest}"),
            ("POST", "/v2/dist/blobs/uploads/"),  # the namespace itself
        ):
            r = c.request(method, path, content=b"")
            assert r.status_code == 405, (method, path, r.text)
            assert r.json()["errors"][0]["code"] == "UNSUPPORTED"
        repo = f"local/{repo_name()}"
        push_image(c, repo, img, "mine")
        upstreams.dist.clear()
        r = c.get(f"/v2/{repo}/manifests/mine", headers=ACCEPT)
        assert r.status_code == 200 and r.content == img.manifest
    nothing_reached_an_upstream(upstreams)


@pytest.fixture
def authed_cache(
    upstreams: Upstreams, in_process_cache: MakeCache, tmp_path: Path
) -> InProcessRegistry:
    """Token auth: anonymous may pull dist/public/**; admin everything; nobody else."""
    auth = auth_section(
        tmp_path,
        "token",
        token={"key_file": str(tmp_path / "token.pem")},
        anonymous=[{"repositories": ["dist/public/**"], "role": "reader"}],
    )
    return in_process_cache(config={"auth": auth})


def token(cache: InProcessRegistry, scope: str, user: str | None = None) -> str:
    with cache.client() as c:
        r = c.get(
            "/auth/token",
            params={"service": "registry", "scope": scope},
            auth=(user, PASSWORD) if user else None,
        )
    assert r.status_code == 200, r.text
    value: str = r.json()["token"]
    return value


def test_cached_repositories_need_grants_also_through_ns(
    upstreams: Upstreams, authed_cache: InProcessRegistry
) -> None:
    repo = repo_name()
    img = image(layers=1)
    upstreams.seed("reg", repo, img)
    upstreams.seed("dist", f"public/{repo}", img)
    cache = authed_cache
    with cache.client() as c:
        r = c.get(f"/v2/reg/{repo}/manifests/v1", headers=ACCEPT)
        assert r.status_code == 401
        r = c.get(f"/v2/{repo}/manifests/v1", params={"ns": upstreams.reg.host})
        assert r.status_code == 401
        assert f'scope="repository:reg/{repo}:pull"' in r.headers["www-authenticate"]
        # An anonymous token carries nothing for the cached repository.
        anonymous = token(cache, f"repository:reg/{repo}:pull")
        r = c.get(
            f"/v2/reg/{repo}/manifests/v1",
            headers={**ACCEPT, "Authorization": f"Bearer {anonymous}"},
        )
        assert r.status_code == 401
        nothing_reached_an_upstream(upstreams)

        r = c.get(
            f"/v2/dist/public/{repo}/manifests/v1",
            headers={
                **ACCEPT,
                "Authorization": f"Bearer {token(cache, f'repository:dist/public/{repo}:pull')}",
            },
        )
        assert r.status_code == 200 and r.content == img.manifest
        admin = token(cache, f"repository:reg/{repo}:pull", user="admin")
        r = c.get(
            f"/v2/{repo}/manifests/v1",
            params={"ns": upstreams.reg.host},
            headers={**ACCEPT, "Authorization": f"Bearer {admin}"},
        )
        assert r.status_code == 200 and r.content == img.manifest
