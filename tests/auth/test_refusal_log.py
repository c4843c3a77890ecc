"""Every refusal is one line of `registry.auth` with method, path, client, status, user,
reason and the scope needed (docs/auth.md, "What is logged"), at WARNING when a sent
credential did not work or for a 403/429, at INFO for the challenges of a normal pull.
In this process: the lines are the registry's log records, formatted as its log file
has them."""

from __future__ import annotations

import re
import uuid

import httpx

from tests.asgi_registry import InProcessRegistry
from tests.auth.conftest import PASSWORD, bearer, get_token, unique

LINE = re.compile(
    r"^\S+ (?P<level>\w+) registry\.auth: refused (?P<method>[A-Z]+) (?P<path>\S+) "
    r"from (?P<client>\S+) \((?P<status>\d{3})\): user (?P<user>\S+): (?P<reason>.+); "
    r"needed (?P<needed>.+)$"
)


def refusals(registry: InProcessRegistry, marker: str) -> list[dict[str, str]]:
    """The parsed refusal lines that mention ``marker`` (a unique name of the test)."""
    out = []
    for line in registry.log().splitlines():
        if marker in line and " refused " in line:
            m = LINE.match(line)
            assert m is not None, f"refusal line not in the documented form: {line}"
            out.append(m.groupdict())
    return out


def one(registry: InProcessRegistry, marker: str) -> dict[str, str]:
    found = refusals(registry, marker)
    assert len(found) == 1, found
    return found[0]


def test_failed_basic_login_names_request_user_and_scope(basic_registry: InProcessRegistry) -> None:
    name, user = unique("team-a"), f"mallory-{uuid.uuid4().hex[:6]}"
    with basic_registry.client(auth=(user, "guess")) as c:
        assert c.get(f"/v2/{name}/tags/list").status_code == 401
    line = one(basic_registry, user)
    assert line == {
        "level": "warning",
        "method": "GET",
        "path": f"/v2/{name}/tags/list",
        "client": "127.0.0.1",
        "status": "401",
        "user": f"'{user}'",
        "reason": "unknown user or wrong password",
        "needed": f"repository:{name}:pull",
    }
    assert "guess" not in basic_registry.log()


def test_throttled_login_names_request_user_and_scope(
    token_registry: InProcessRegistry, http: httpx.Client
) -> None:
    name = unique("team-a")
    away = token_registry.client(address="10.77.0.1")  # erin stays free at 127.0.0.1
    scope = {"scope": f"repository:{name}:pull"}
    for _ in range(3):
        away.get("/auth/token", params=scope, auth=("erin", "x"))
    r = away.get("/auth/token", params=scope, auth=("erin", "y"))
    assert r.status_code == 429
    found = refusals(token_registry, name)
    assert [f["status"] for f in found] == ["401", "401", "401", "429"]
    assert {f["level"] for f in found} == {"warning"}
    assert {(f["method"], f["path"], f["client"], f["user"], f["needed"]) for f in found} == {
        ("GET", "/auth/token", "10.77.0.1", "'erin'", f"repository:{name}:pull")
    }
    assert found[-1]["reason"] == "too many failed attempts for this user"
    assert away.get("/auth/token", auth=("erin", PASSWORD)).status_code == 429
    away.close()
    assert http.get("/auth/token", auth=("erin", PASSWORD)).status_code == 200  # elsewhere


def test_challenges_without_credentials_are_info(token_registry: InProcessRegistry) -> None:
    name = unique("team-a")
    with token_registry.client() as c:
        assert c.get(f"/v2/{name}/tags/list").status_code == 401
    line = one(token_registry, name)
    assert (line["level"], line["status"], line["user"]) == ("info", "401", "-")
    assert line["reason"] == "no bearer token"


def test_a_token_without_the_scope_is_info_and_names_the_user(
    token_registry: InProcessRegistry, http: httpx.Client
) -> None:
    name, other = unique("team-a"), unique("team-a")
    token = get_token(http, f"repository:{other}:pull", user="alice")
    assert http.get(f"/v2/{name}/tags/list", headers=bearer(token)).status_code == 401
    line = one(token_registry, name)
    assert (line["level"], line["user"], line["needed"]) == (
        "info",
        "'alice'",
        f"repository:{name}:pull",
    )


def test_bad_tokens_and_403s_are_warnings(
    token_registry: InProcessRegistry, http: httpx.Client
) -> None:
    name = unique("team-a")
    token = get_token(http, f"repository:{name}:pull", user="bob")
    assert http.post(f"/v2/{name}/blobs/uploads/", headers=bearer(token)).status_code == 403
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert http.get(f"/v2/{name}/tags/list", headers=bearer(forged)).status_code == 401
    denied, invalid = refusals(token_registry, name)
    assert (denied["level"], denied["status"], denied["user"]) == ("warning", "403", "'bob'")
    assert denied["needed"] == f"repository:{name}:pull,push"
    assert (invalid["level"], invalid["status"], invalid["user"]) == ("warning", "401", "-")
    assert invalid["reason"].startswith("invalid token")
    assert token not in token_registry.log()


def test_refused_refresh_token_is_a_warning_with_the_request(
    token_registry: InProcessRegistry, http: httpx.Client
) -> None:
    name = unique("team-a")
    r = http.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": "not.a.token",
            "service": "registry",
            "scope": f"repository:{name}:pull",
        },
    )
    assert r.status_code == 401
    line = one(token_registry, name)
    assert (line["level"], line["method"], line["path"]) == ("warning", "POST", "/auth/token")
    assert line["reason"].startswith("invalid refresh token")
