"""The UI in a real headless browser (Debian's chromium, driven by Playwright) against a
real `registry serve` with two workers and token auth, seeded by skopeo and the ORAS
client (tests/ui/browser.py). Every main page is also photographed, light and dark and
on a phone, into test-output/ui/."""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.auth.conftest import PASSWORD
from tests.ui.browser import Seeded, api_tags, log_in, screenshot_dir

pytestmark = pytest.mark.timeout(900)

NewPage = Callable[..., Any]
NEXT = "Next \u203a"
EN_DASH = "\u2013"


@pytest.fixture
def new_page(playwright_browser: Any, seeded: Seeded) -> Iterator[NewPage]:
    """``new_page(user=None, **context options)``: a page in a fresh browser context,
    logged in as ``user`` when given."""
    contexts: list[Any] = []

    def make(user: str | None = None, **options: Any) -> Any:
        context = playwright_browser.new_context(base_url=seeded.server.url, **options)
        context.set_default_timeout(20_000)
        contexts.append(context)
        page = context.new_page()
        if user is not None:
            log_in(page, seeded.server.url, user)
        return page

    yield make
    for context in contexts:
        context.close()


def row_names(page: Any) -> list[str]:
    names: list[str] = page.locator("table.list tbody a.name").all_inner_texts()
    return names


def test_log_in_with_a_registry_user(new_page: NewPage, seeded: Seeded) -> None:
    page = new_page()
    page.goto("/")
    assert page.url == f"{seeded.server.url}/ui/"
    page.get_by_role("link", name="Log in").click()
    page.get_by_label("User name").fill("carol")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_role("alert").inner_text() == "Wrong user name or password."
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/ui/")
    assert "Signed in as carol" in page.locator("header").inner_text()
    cookie = next(c for c in page.context.cookies() if c["name"] == "registry_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    assert time.time() + 3600 < cookie["expires"] < time.time() + 9 * 3600
    # Two workers answer these: the session is good in both (the key is in storage).
    for _ in range(6):
        page.goto("/ui/?q=team-b")
        assert row_names(page) == ["team-b/api", "team-b/web"]
        assert "Signed in as carol" in page.locator("header").inner_text()


def test_browse_the_catalog_with_search_and_paging(new_page: NewPage, seeded: Seeded) -> None:
    page = new_page()
    page.goto("/ui/")
    assert row_names(page) == seeded.tools[:50]
    assert f"55 repositories, 1{EN_DASH}50 shown." in page.locator(".count").inner_text()
    page.get_by_role("link", name=NEXT).click()
    assert row_names(page) == seeded.tools[50:]
    assert "Page 2 of 2" in page.locator(".pager").inner_text()
    search = page.get_by_label("Search repositories")
    search.fill("tool-4")
    search.press("Enter")
    page.wait_for_url(re.compile(r".*q=tool-4.*"))
    assert row_names(page) == [f"public/tool-4{i}" for i in range(10)]
    page.get_by_role("link", name="Last push").click()
    assert row_names(page)[0] == "public/tool-49"  # the newest push first
    assert page.locator('th[aria-sort="descending"]').inner_text().startswith("Last push")


def test_an_anonymous_visitor_sees_only_public_repositories(
    new_page: NewPage, seeded: Seeded
) -> None:
    page = new_page()
    page.goto("/ui/?q=/")
    names = row_names(page)
    page.get_by_role("link", name=NEXT).click()
    names += row_names(page)
    assert names == seeded.tools
    page.goto("/ui/repositories/team-b/web")
    assert "/ui/login" in page.url
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def test_open_a_multi_arch_index_and_an_image_with_referrers(
    new_page: NewPage, seeded: Seeded
) -> None:
    page = new_page("carol")
    page.goto("/ui/?q=team-b")
    page.get_by_role("link", name="team-b/web").click()
    row = page.locator("tbody tr", has=page.get_by_role("rowheader", name="1.4.2", exact=True))
    assert row.locator(".chips li").all_inner_texts() == [
        "linux/amd64",
        "linux/arm64",
        "linux/arm/v7",
    ]
    row.get_by_role("link", name="1.4.2", exact=True).click()
    expect(page.get_by_role("heading", name="Platforms")).to_be_visible()
    platforms = page.locator("table.list tbody th").all_inner_texts()
    assert platforms == ["linux/amd64", "linux/arm64", "linux/arm/v7"]
    arm = seeded.index.children[1]
    page.locator("table.list tbody tr").nth(1).get_by_role("link").click()
    assert arm.digest in page.locator("dl.facts").first.inner_text()
    config = page.locator("section", has=page.get_by_role("heading", name="Config"))
    assert "/usr/local/bin/app" in config.inner_text()
    assert "8080/tcp" in config.inner_text()
    layers = page.locator("table.layers tbody tr")
    assert layers.count() == 3
    assert "apk add --no-cache" in layers.nth(1).inner_text()

    page.goto("/ui/repositories/team-b/api/-/manifests/2.0")
    tree = page.locator("section", has=page.get_by_role("heading", name="Referrers"))
    top = tree.locator(":scope > ul.tree > li")
    assert top.count() == 2
    kinds = [top.nth(i).locator(".kind").first.inner_text() for i in range(2)]
    assert sorted(k.lower() for k in kinds) == ["sbom", "signature"]
    sbom = top.filter(has_text="application/spdx+json")
    assert "syft 1.4" in sbom.inner_text()
    nested = sbom.locator("ul.tree li")
    assert nested.count() == 1 and "notary.signature" in nested.inner_text()
    # A referrer's own page names what it refers to.
    sbom.locator(".node a").first.click()
    expect(page.get_by_text("Refers to", exact=True)).to_be_visible()


def test_copy_a_pull_command(new_page: NewPage, seeded: Seeded) -> None:
    page = new_page("carol")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto("/ui/repositories/team-b/web")
    row = page.locator("tbody tr", has=page.get_by_role("rowheader", name="1.4.2", exact=True))
    row.locator("summary").click()
    button = row.get_by_role("button", name="Copy the docker command for team-b/web:1.4.2")
    button.click()
    expected = f"docker pull {seeded.server.host}/team-b/web:1.4.2"
    assert page.evaluate("navigator.clipboard.readText()") == expected
    expect(button).to_have_text("Copied")
    expect(page.locator("#live")).to_contain_text(expected)
    # From the keyboard too.
    podman = row.get_by_role("button", name="Copy the podman command for team-b/web:1.4.2")
    podman.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#live")).to_contain_text("podman pull")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == f"podman pull --tls-verify=false {seeded.server.host}/team-b/web:1.4.2"


def test_a_maintainer_deletes_a_tag(new_page: NewPage, seeded: Seeded) -> None:
    assert api_tags(seeded.server, "team-b/web") == ["1.4.2", "latest"]
    page = new_page("carol")
    page.goto("/ui/repositories/team-b/web")
    page.get_by_role("link", name="Delete tag latest").click()
    confirm = page.locator(".confirm").inner_text()
    assert "Only the tag team-b/web:latest is removed" in confirm
    assert "Its other tags stay too: 1.4.2." in confirm
    page.get_by_role("button", name="Delete the tag latest").click()
    page.wait_for_url("**/ui/repositories/team-b/web?deleted=latest")
    expect(page.get_by_role("status").filter(has_text="Deleted latest.")).to_be_visible()
    assert row_names_of_tags(page) == ["1.4.2"]
    assert api_tags(seeded.server, "team-b/web") == ["1.4.2"]


def row_names_of_tags(page: Any) -> list[str]:
    names: list[str] = page.locator("tbody th a.name").all_inner_texts()
    return names


class Attacker:
    """A page on another origin whose form posts to the registry as soon as it loads."""

    def __init__(self, target: str) -> None:
        html = (
            f'<form method="post" action="{target}"><input name="csrf" value="guessed"></form>'
            "<script>document.forms[0].submit()</script>"
        ).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(html)))
                self.end_headers()
                self.wfile.write(html)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_reader_sees_no_delete_button_and_forged_deletes_are_refused(
    new_page: NewPage, seeded: Seeded
) -> None:
    page = new_page("bob")
    page.goto("/ui/repositories/team-a/app")
    assert row_names_of_tags(page) == ["v1", "v2"]
    assert page.get_by_role("link", name=re.compile("Delete")).count() == 0
    page.get_by_role("link", name="v1", exact=True).click()
    assert page.get_by_role("link", name=re.compile("Delete")).count() == 0
    # bob forges the delete with his own session and its good CSRF token.
    token = page.locator('form[action="/ui/logout"] input[name="csrf"]').get_attribute("value")
    url = "/ui/repositories/team-a/app/-/tags/v1/delete"
    assert page.request.post(url, form={"csrf": token}).status == 403
    assert page.request.get(url).status == 403
    assert api_tags(seeded.server, "team-a/app") == ["v1", "v2"]

    # A page elsewhere makes carol's browser post a delete: refused, whether the page
    # is on this site (another port: the token is wrong) or on another site (the
    # SameSite=Strict cookie does not even go along).
    carol = new_page("carol")
    target = f"{seeded.server.url}/ui/repositories/team-b/api/-/tags/2.0/delete"
    attacker = Attacker(target)
    try:
        for host in ("127.0.0.1", "localhost"):
            carol.goto(f"http://{host}:{attacker.port}/")
            carol.wait_for_url(target)
            expect(carol.get_by_role("heading", name="Form refused")).to_be_visible()
    finally:
        attacker.close()
    assert "2.0" in api_tags(seeded.server, "team-b/api")


MAIN_PAGES = [
    ("repositories", "/ui/"),
    ("repository", "/ui/repositories/team-b/web"),
    ("index", "/ui/repositories/team-b/web/-/manifests/1.4.2"),
    ("image-with-referrers", "/ui/repositories/team-b/api/-/manifests/2.0"),
    ("storage", "/ui/storage"),
    ("delete-tag", "/ui/repositories/team-b/api/-/tags/2.0/delete"),
]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_screenshots_of_the_main_pages(new_page: NewPage, scheme: str) -> None:
    """Each main page, light and dark, wide and on a phone: for a reviewer's eyes
    (test-output/ui/). On the phone nothing is wider than the screen."""
    folder = screenshot_dir()
    for device, options in (
        ("desktop", {"viewport": {"width": 1280, "height": 900}}),
        ("phone", {"viewport": {"width": 390, "height": 844}, "is_mobile": True}),
    ):
        page = new_page("admin", color_scheme=scheme, **options)
        for name, url in MAIN_PAGES:
            page.goto(url)
            page.evaluate("document.querySelector('details.pull')?.setAttribute('open', '')")
            page.screenshot(path=str(folder / f"{name}-{device}-{scheme}.png"), full_page=True)
            if device == "phone":
                overflow = page.evaluate(
                    "document.documentElement.scrollWidth - document.documentElement.clientWidth"
                )
                assert overflow <= 0, f"{url} is {overflow}px wider than a phone"
        login = new_page(color_scheme=scheme, **options)
        login.goto("/ui/login")
        login.screenshot(path=str(folder / f"login-{device}-{scheme}.png"), full_page=True)
    assert len(list(folder.glob(f"*-{scheme}.png"))) >= 2 * (len(MAIN_PAGES) + 1)


_A11Y_PROBLEMS = """() => {
  const problems = [];
  const visible = (e) => e.offsetParent !== null || e.getClientRects().length > 0;
  for (const e of document.querySelectorAll("input, select, textarea")) {
    if (e.type === "hidden" || !visible(e)) continue;
    if (!(e.labels && e.labels.length) && !e.getAttribute("aria-label"))
      problems.push("no label: " + e.outerHTML);
  }
  for (const e of document.querySelectorAll("button, a[href]")) {
    if (!visible(e)) continue;
    const name = (e.getAttribute("aria-label") || e.textContent || "").trim();
    if (!name) problems.push("no name: " + e.outerHTML);
  }
  for (const e of document.querySelectorAll("img"))
    if (!e.hasAttribute("alt")) problems.push("no alt: " + e.outerHTML);
  if (document.querySelectorAll("h1").length !== 1) problems.push("not one h1");
  if (!document.documentElement.lang) problems.push("no lang");
  for (const t of document.querySelectorAll("table"))
    if (!t.querySelector("th")) problems.push("a table without headers");
  return problems;
}"""


def test_pages_are_labelled_and_work_from_the_keyboard(new_page: NewPage) -> None:
    page = new_page("carol")
    for _, url in [*MAIN_PAGES, ("login", "/ui/login")]:
        page.goto(url)
        assert page.evaluate(_A11Y_PROBLEMS) == [], url
    page.goto("/ui/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # To the search box and a search, from the keyboard alone.
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "q":
            break
    page.keyboard.type("team-b/w")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*q=team-b.*"))
    assert row_names(page) == ["team-b/web"]


def test_reading_works_without_javascript(new_page: NewPage, seeded: Seeded) -> None:
    page = new_page(java_script_enabled=False)
    page.goto("/ui/login")
    page.get_by_label("User name").fill("carol")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/ui/")
    page.get_by_label("Search repositories").fill("team-b")
    page.get_by_role("button", name="Search").click()  # a plain GET form
    page.get_by_role("link", name="team-b/api").click()
    row = page.locator("tbody tr", has=page.get_by_role("rowheader", name="2.0", exact=True))
    # The copy buttons need script: without it they are not shown.
    assert row.locator("button.copy").count() == 4
    expect(row.locator("button.copy").first).to_be_hidden()
    row.locator("summary").click()  # <details> opens without script
    expect(row.get_by_text(f"docker pull {seeded.server.host}/team-b/api:2.0")).to_be_visible()
    row.get_by_role("link", name="2.0", exact=True).click()
    expect(page.get_by_role("heading", name="Referrers")).to_be_visible()
    assert page.locator("ul.tree li").count() == 3
