"""The UI never shows or does what the API would refuse: for every user of the auth
tests' policy (and an anonymous visitor), the repositories listed, the pages served,
the delete buttons offered and the deletes performed match what the API answers the
same user -- and forged or cross-site forms are refused."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.asgi_registry import InProcessRegistry
from tests.auth.conftest import get_token
from tests.ui.conftest import REPOSITORIES, USERS, Visitor, admin_client, seed, visitor_of

_LISTED = re.compile(r'<a class="name" href="/ui/repositories/([^"]+)">')


def api_rights(registry: InProcessRegistry, user: str | None, name: str) -> set[str]:
    """What the API lets ``user`` do on ``name``, probed without changing anything: a
    tag listing (pull) and the delete of a tag that does not exist (404 once allowed)."""
    with registry.client() as api:
        token = get_token(api, f"repository:{name}:pull,delete", user=user)
        api.headers["Authorization"] = f"Bearer {token}"
        rights = set()
        if api.get(f"/v2/{name}/tags/list").status_code == 200:
            rights.add("pull")
        if api.delete(f"/v2/{name}/manifests/no-such-tag").status_code == 404:
            rights.add("delete")
        return rights


def tags_of(registry: InProcessRegistry, name: str) -> list[str]:
    with admin_client(registry, (name,)) as api:
        tags: list[str] = api.get(f"/v2/{name}/tags/list").json()["tags"]
        return tags


@pytest.mark.parametrize("user", USERS, ids=lambda u: u or "anonymous")
def test_the_ui_shows_and_offers_exactly_what_the_api_allows(
    policy_registry: InProcessRegistry, user: str | None
) -> None:
    visitor = visitor_of(policy_registry, user)
    listed = set(_LISTED.findall(visitor.get("/ui/").text))
    rights = {name: api_rights(policy_registry, user, name) for name in REPOSITORIES}
    assert listed == {n for n in REPOSITORIES if "pull" in rights[n]}
    csrf = visitor.csrf("/ui/login") if user is None else visitor.csrf("/ui/")
    for name in REPOSITORIES:
        page = visitor.get(f"/ui/repositories/{name}")
        manifest = visitor.get(f"/ui/repositories/{name}/-/manifests/v1")
        confirm = visitor.get(f"/ui/repositories/{name}/-/tags/v1/delete")
        if "pull" not in rights[name]:
            for refused in (page, manifest, confirm):
                if user is None:  # anonymous: to the login form, which tells nothing
                    assert refused.status_code == 303
                    assert refused.headers["location"].startswith("/ui/login?next=")
                else:  # whether it exists is not told
                    assert refused.status_code == 404
                assert "sha256:" not in refused.text and "Tags of" not in refused.text
            continue
        assert page.status_code == 200 and manifest.status_code == 200
        offered = f"/ui/repositories/{name}/-/tags/v1/delete" in page.text
        assert offered == ("delete" in rights[name])
        assert (confirm.status_code == 200) == ("delete" in rights[name])
        if "delete" not in rights[name]:
            # A forged request with the visitor's own good CSRF token: still refused.
            forged = visitor.post(f"/ui/repositories/{name}/-/tags/v1/delete", {"csrf": csrf})
            assert forged.status_code == 403
            assert tags_of(policy_registry, name) == ["v1", "v2"]


def test_a_maintainer_deletes_one_tag_and_its_siblings_stay(
    policy_registry: InProcessRegistry,
) -> None:
    name = "team-b/deleting"
    with admin_client(policy_registry, (name,)) as api:
        img = seed(api, name)
    carol = visitor_of(policy_registry, "carol")
    confirm = carol.get(f"/ui/repositories/{name}/-/tags/v1/delete")
    assert "Its other tags stay too" in confirm.text and "<code>v2</code>" in confirm.text
    token = re.search(r'name="csrf" value="([^"]+)"', confirm.text)
    assert token is not None
    done = carol.post(f"/ui/repositories/{name}/-/tags/v1/delete", {"csrf": token.group(1)})
    assert done.status_code == 303
    assert done.headers["location"] == f"/ui/repositories/{name}?deleted=v1"
    assert tags_of(policy_registry, name) == ["v2"]
    assert "Deleted v1." in carol.get(done.headers["location"]).text
    # The manifest: its confirmation lists the tags that go with it.
    url = f"/ui/repositories/{name}/-/manifests/{img.digest}/delete"
    confirm = carol.get(url)
    assert "These tags go with it" in confirm.text and "<li>v2</li>" in confirm.text
    csrf = carol.csrf(url)
    # Tags that changed since the confirmation: asked again, nothing deleted.
    again = carol.post(url, {"csrf": csrf, "tags": "v2 v3"})
    assert again.status_code == 409 and tags_of(policy_registry, name) == ["v2"]
    done = carol.post(url, {"csrf": csrf, "tags": "v2"})
    assert done.status_code == 303
    assert tags_of(policy_registry, name) == []
    assert carol.get(f"/ui/repositories/{name}/-/manifests/{img.digest}").status_code == 404


def test_forms_from_elsewhere_are_refused(policy_registry: InProcessRegistry) -> None:
    name = "team-b/forms"
    with admin_client(policy_registry, (name,)) as api:
        seed(api, name)
    carol = visitor_of(policy_registry, "carol")
    url = f"/ui/repositories/{name}/-/tags/v1/delete"
    good = carol.csrf(url)
    someone_else = Visitor(policy_registry.client()).csrf()
    refused = [
        carol.post(url, {}),
        carol.post(url, {"csrf": "x" * 43}),
        carol.post(url, {"csrf": someone_else}),
        carol.post(url, {"csrf": good}, headers={"Origin": "http://evil.test"}),
        carol.post(url, {"csrf": good}, headers={"Origin": "null"}),
        # A cross-site form arrives without the SameSite=Strict cookie.
        Visitor(policy_registry.client()).post(url, {"csrf": good}),
    ]
    assert [r.status_code for r in refused] == [403] * 6
    assert tags_of(policy_registry, name) == ["v1", "v2"]
    # This host, whatever the scheme (a proxy that terminates TLS): accepted.
    done = carol.post(url, {"csrf": good}, headers={"Origin": "https://registry.test"})
    assert done.status_code == 303 and tags_of(policy_registry, name) == ["v2"]


def test_the_session_cookie_is_strict_httponly_expiring_and_secure_under_tls(
    policy_registry: InProcessRegistry,
) -> None:
    visitor = Visitor(policy_registry.client())
    visitor.http.base_url = httpx.URL("https://registry.test")
    r = visitor.login("bob")
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    for attribute in ("HttpOnly", "SameSite=strict", "Secure", "Path=/ui", "Max-Age=28800"):
        assert attribute.lower() in cookie.lower(), cookie
    plain = visitor_of(policy_registry, None).get("/ui/login").headers["set-cookie"]
    assert "secure" not in plain.lower()


def test_logging_in_is_bound_by_the_failed_login_limit(
    policy_registry: InProcessRegistry,
) -> None:
    visitor = Visitor(policy_registry.client())
    for _ in range(3):
        wrong = visitor.login("throttled", "wrong password")
        assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
    right = visitor.login("throttled")
    assert right.status_code == 429 and "Too many failed logins" in right.text
    assert "registry_session" not in visitor.get("/ui/").text


def test_logging_out_ends_the_session(policy_registry: InProcessRegistry) -> None:
    bob = visitor_of(policy_registry, "bob")
    assert "Signed in as <strong>bob</strong>" in bob.get("/ui/").text
    kept = dict(bob.http.cookies)
    assert bob.post("/ui/logout", {"csrf": bob.csrf("/ui/")}).status_code == 303
    assert "Signed in" not in bob.get("/ui/").text
    assert "team-a/app" not in bob.get("/ui/").text
    # The logout form itself is protected: a forged one does nothing.
    alice = visitor_of(policy_registry, "alice")
    assert alice.post("/ui/logout", {"csrf": "forged"}).status_code == 403
    assert "Signed in as <strong>alice</strong>" in alice.get("/ui/").text
    # Sessions are stateless: a copy of the old cookie works until it expires
    # (ui.session_lifetime); logging out forgets it in this browser.
    replay = Visitor(policy_registry.client(cookies=kept))
    assert "Signed in as <strong>bob</strong>" in replay.get("/ui/").text


def test_a_login_goes_back_only_to_pages_of_the_ui(policy_registry: InProcessRegistry) -> None:
    for asked, landed in (
        ("/ui/repositories/team-a/app", "/ui/repositories/team-a/app"),
        ("https://evil.test/", "/ui/"),
        ("//evil.test/ui/", "/ui/"),
        ("/ui/..//evil.test", "/ui/"),
    ):
        visitor = Visitor(policy_registry.client())
        csrf = visitor.csrf()
        r = visitor.post(
            "/ui/login", {"csrf": csrf, "username": "bob", "password": "s3cret-pw", "next": asked}
        )
        assert r.headers["location"] == landed
