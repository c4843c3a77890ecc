"""What the pages show, read the way a browser without JavaScript reads them: the
repository list (search, sort, pages, all on the server), a repository's tags, a
manifest or index with its config, history and referrers, the storage page, the
assets and headers; and the switches that change what is offered."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx

from registry.reference import Digest
from registry.store import RegistryStore, RepositoryUsage, UsageSnapshot
from storage_backends.memory import MemoryDriver
from tests import images
from tests.asgi_registry import InProcessRegistry
from tests.ui import content
from tests.ui.conftest import auth_config, visitor_of

_ROW_NAMES = re.compile(r'<a class="name" href="/ui/repositories/([^"]+)">')
_TAG_NAMES = re.compile(
    r'<th scope="row" data-label="Tag"><a class="name" href="[^"]+">([^<]+)</a>'
)

MakeRegistry = Callable[..., InProcessRegistry]


def store_of(registry: InProcessRegistry) -> RegistryStore:
    store: RegistryStore = registry.app.state.store
    return store


class Clock:
    """Modification times of a MemoryDriver, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_repositories_are_searched_sorted_and_paged_on_the_server(
    make_registry: MakeRegistry,
) -> None:
    registry = make_registry()
    store = store_of(registry)
    names = [f"org/repo-{i:03d}" for i in range(120)]

    async def generate() -> None:
        for i, name in enumerate(names):
            await store.catalog.add(name)
            await store.pushes.record(name, at=1_700_000_000 + i * 60)
        usage = tuple(
            RepositoryUsage(n, held_bytes=1000 + (i * 37) % 101) for i, n in enumerate(names[:100])
        )
        await store.usage.write(UsageSnapshot(1_700_100_000, 10**6, 0, usage))

    registry.run(generate())
    http = registry.client()

    def listed(query: str = "") -> list[str]:
        r = http.get("/ui/" + query)
        assert r.status_code == 200
        return _ROW_NAMES.findall(r.text)

    assert listed() == names[:50]
    first = http.get("/ui/").text
    assert "120 repositories, 1\u201350 shown." in first
    assert re.search(r'href="/ui/\?[^"]*page=2" rel="next"', first)
    assert listed("?page=3") == names[100:]
    assert listed("?page=999") == names[100:]  # past the end: the last page
    assert listed("?q=repo-11") == names[110:120]
    assert listed("?q=nothing-like-it") == []
    assert listed("?sort=name&order=desc") == list(reversed(names))[:50]
    assert listed("?sort=pushed") == list(reversed(names))[:50]  # newest first
    assert listed("?sort=pushed&order=asc") == names[:50]
    by_size = listed("?sort=size") + listed("?sort=size&page=2") + listed("?sort=size&page=3")
    sizes = {u: 1000 + (i * 37) % 101 for i, u in enumerate(names[:100])}
    assert [sizes[n] for n in by_size[:100]] == sorted(sizes.values(), reverse=True)
    assert by_size[100:] == names[100:]  # not counted yet: last, in name order
    sorted_page = http.get("/ui/?sort=size").text
    assert 'aria-sort="descending"' in sorted_page


def test_tags_sort_by_name_version_and_push_time(make_registry: MakeRegistry) -> None:
    clock = Clock()
    registry = make_registry(driver=MemoryDriver(clock=clock))
    http = registry.client()
    name = "team/web"
    img = content.app_image()
    images.push_image(http, name, img)
    pushed = ["v1.2.0", "latest", "v1.10.0", "1.0.0-rc.1", "main", "v1.9.3"]
    pushed += [f"build-{i:03d}" for i in range(60)]
    for tag in pushed:
        clock.now += 10
        r = http.put(
            f"/v2/{name}/manifests/{tag}",
            content=img.manifest,
            headers={"Content-Type": img.media_type},
        )
        assert r.status_code == 201

    def tags(query: str = "") -> list[str]:
        r = http.get(f"/ui/repositories/{name}{query}")
        assert r.status_code == 200
        return _TAG_NAMES.findall(r.text)

    assert tags("?q=v1.") == ["v1.10.0", "v1.2.0", "v1.9.3"]
    assert tags("?q=.&sort=version") == ["v1.10.0", "v1.9.3", "v1.2.0", "1.0.0-rc.1"]
    assert tags("?q=.&sort=version&order=asc") == ["1.0.0-rc.1", "v1.2.0", "v1.9.3", "v1.10.0"]
    assert tags("?sort=pushed")[:3] == ["build-059", "build-058", "build-057"]
    assert tags("?sort=pushed&page=2")[-6:] == list(reversed(pushed[:6]))
    assert len(tags()) == 50 and len(tags("?page=2")) == 16
    page = http.get(f"/ui/repositories/{name}?q=latest").text
    assert img.digest[:19] in page  # the short digest
    assert "OCI image" in page and "linux/amd64" in page
    # The size as pulled: manifest, config and layers.
    pulled = len(img.manifest) + sum(len(b) for b in img.blobs.values())
    assert f'title="{pulled} bytes"' in page
    for tool in ("docker pull", "podman pull", "skopeo copy", "oras pull"):
        assert f"{tool} " in page


def test_an_index_shows_its_platforms_and_an_image_its_config_history_and_referrers(
    make_registry: MakeRegistry,
) -> None:
    registry = make_registry()
    http = registry.client()
    name = "team/web"
    index = content.app_index()
    images.push_image(http, name, index, tag="1.4.2")
    amd64 = index.children[0]
    signature = content.referrer(
        index, "application/vnd.dev.cosign.artifact.sig.v1+json", b"sig", signer="ci@example.com"
    )
    sbom = content.referrer(amd64, "application/spdx+json", b'{"spdxVersion":"SPDX-2.3"}')
    sbom_signature = content.referrer(sbom, "application/vnd.cncf.notary.signature", b"jws")
    for artifact in (signature, sbom, sbom_signature):
        images.push_image(http, name, artifact)

    page = http.get(f"/ui/repositories/{name}/-/manifests/1.4.2").text
    for platform in ("linux/amd64", "linux/arm64", "linux/arm/v7"):
        assert f'<th scope="row" data-label="Platform">{platform}</th>' in page
    for child in index.children:
        assert f"/-/manifests/{child.digest}" in page
    assert "signer" in page and "ci@example.com" in page and "kind-signature" in page

    image = http.get(f"/ui/repositories/{name}/-/manifests/{amd64.digest}").text
    for shown in (
        "<code>/usr/local/bin/app</code>",
        "<code>serve --port 8080</code>",
        "APP_HOME=/srv/app",
        "org.opencontainers.image.source",
        "<li>8080/tcp</li>",
        "<li>9090/tcp</li>",
        "Platform Team &lt;platform@example.com&gt;",
    ):
        assert shown in image, shown
    # Each layer with the command that made it (the history's non-empty entries).
    rows = re.findall(r'<tr>\s*<td data-label="#" class="num">(\d)</td>(.*?)</tr>', image, re.S)
    assert [n for n, _ in rows] == ["1", "2", "3"]
    assert "ADD file:3b1c0f7e" in rows[0][1]
    assert "apk add --no-cache" in rows[1][1]
    assert "COPY ./dist /srv/app" in rows[2][1]
    # The referrers tree: the SBOM, and the signature of the SBOM below it.
    tree = image[image.index('id="referrers-h"') :]
    assert tree.index("kind-sbom") < tree.index("kind-signature")
    assert tree.count('<ul class="tree">') == 2
    assert "application/vnd.cncf.notary.signature" in tree


def test_the_storage_page_reads_the_last_count_and_hides_what_others_hold(
    make_registry: MakeRegistry, tmp_path: Any
) -> None:
    open_registry = make_registry()
    snapshot = UsageSnapshot(
        finished_at=1_700_000_000,
        total_bytes=5 * 2**30,
        reclaimable_bytes=300 * 2**20,
        repositories=(
            RepositoryUsage("team-a/app", held_bytes=3 * 2**30, unique_bytes=2**30),
            RepositoryUsage("team-b/app", held_bytes=2 * 2**30, unique_bytes=2**29),
            RepositoryUsage("public/app", held_bytes=2**20, unique_bytes=2**20),
        ),
    )
    assert "No garbage collection has counted" in open_registry.client().get("/ui/storage").text
    open_registry.run(store_of(open_registry).usage.write(snapshot))
    page = open_registry.client().get("/ui/storage").text
    for shown in ("5 GiB", "300 MiB", "Only here", "team-b/app", "2023-11-14 22:13:20 UTC"):
        assert shown in page, shown
    assert page.index("team-a/app") < page.index("team-b/app")  # most of its own first

    guarded = make_registry(auth_config(tmp_path))
    guarded.run(store_of(guarded).usage.write(snapshot))
    # bob reads team-a/* (and public/*, as everyone): not team-b/app, so no figure
    # that counts it either.
    bob = visitor_of(guarded, "bob").get("/ui/storage").text
    assert "team-a/app" in bob and "3 GiB" in bob and "public/app" in bob
    for hidden in ("team-b/app", "5 GiB", "300 MiB", "Only here"):
        assert hidden not in bob, hidden
    anonymous = visitor_of(guarded, None).get("/ui/storage").text
    assert "public/app" in anonymous and "team-a/app" not in anonymous


def test_assets_are_served_with_cache_headers_and_pages_are_private(
    make_registry: MakeRegistry,
) -> None:
    http = make_registry().client()
    page = http.get("/ui/")
    assert page.headers["cache-control"] == "no-store"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    for asset in re.findall(r'(?:href|src)="(/ui/static/[^"]+)"', page.text):
        r = http.get(asset)
        assert r.status_code == 200, asset
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        again = http.get(asset, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304
    unversioned = http.get("/ui/static/ui.css")
    assert unversioned.headers["cache-control"] == "no-cache"
    assert unversioned.headers["content-type"] == "text/css; charset=utf-8"
    assert http.head("/ui/static/ui.js").headers["content-length"] == str(
        len(http.get("/ui/static/ui.js").content)
    )
    assert http.get("/ui/static/nope.js").status_code == 404
    # No inline script or style anywhere: the CSP allows none.
    assert "<script>" not in page.text and "style=" not in page.text


def test_the_root_leads_to_the_ui_and_the_ui_can_be_switched_off(
    make_registry: MakeRegistry,
) -> None:
    on = make_registry().client()
    assert on.get("/").status_code == 302 and on.get("/").headers["location"] == "/ui/"
    off = make_registry({"ui": {"enabled": False}}).client()
    for path in ("/", "/ui/", "/ui/login", "/ui/static/ui.css"):
        r = off.get(path)
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "UNSUPPORTED"
    assert off.get("/v2/").status_code == 200


def test_no_delete_is_offered_or_done_while_deleting_is_off(
    make_registry: MakeRegistry,
) -> None:
    for config in ({"storage": {"delete": {"enabled": False}}}, {"storage": {"readonly": True}}):
        registry = make_registry()
        http = registry.client()
        images.push_image(http, "team/app", images.image(), tag="v1")
        confirm = http.get("/ui/repositories/team/app/-/tags/v1/delete")
        csrf = re.search(r'name="csrf" value="([^"]+)"', confirm.text)
        assert csrf is not None
        # The same storage, served by a process that refuses deletes; the session of
        # the other process is good here too.
        refusing = make_registry(config, driver=registry.driver).client(cookies=http.cookies)
        page = refusing.get("/ui/repositories/team/app").text
        assert "/-/tags/v1/delete" not in page
        assert refusing.get("/ui/repositories/team/app/-/tags/v1/delete").status_code in (
            405,
            503,
        )
        r = refusing.post(
            "/ui/repositories/team/app/-/tags/v1/delete", data={"csrf": csrf.group(1)}
        )
        assert r.status_code in (405, 503)
        assert http.get("/v2/team/app/tags/list").json()["tags"] == ["v1"]


def test_maintenance_mode_shows_a_banner_and_offers_no_delete(make_registry: MakeRegistry) -> None:
    registry = make_registry({"storage": {"readonly_flag_ttl": 0}})
    http = registry.client()
    images.push_image(http, "team/app", images.image(), tag="v1")
    assert "/-/tags/v1/delete" in http.get("/ui/repositories/team/app").text
    registry.run(store_of(registry).readonly_flag.set("upgrade"))
    page = http.get("/ui/repositories/team/app").text
    assert "read-only now" in page and "/-/tags/v1/delete" not in page


def test_a_link_from_another_site_reloads_once_to_carry_the_strict_cookie(
    make_registry: MakeRegistry, tmp_path: Any
) -> None:
    guarded = make_registry(auth_config(tmp_path))
    cross = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    arrival = httpx.Client(transport=guarded.client()._transport, base_url="http://registry.test")
    first = arrival.get("/ui/repositories/public/app", headers=cross)
    assert first.status_code == 200 and first.headers["refresh"] == "0"
    assert '<meta http-equiv="refresh" content="0">' in first.text
    # Not for what another site embeds (an image, a script): only navigations.
    embedded = arrival.get("/ui/static/favicon.svg", headers={**cross, "Sec-Fetch-Mode": "no-cors"})
    assert embedded.headers["content-type"].startswith("image/svg+xml")
    # Once the cookie is there (or the navigation is from this site), the page itself.
    bob = visitor_of(guarded, "bob")
    assert "refresh" not in bob.get("/ui/", headers=cross).headers
    assert "refresh" not in make_registry().client().get("/ui/", headers=cross).headers


def test_malformed_requests_get_a_page_never_a_server_error(
    make_registry: MakeRegistry, tmp_path: Any
) -> None:
    registry = make_registry(auth_config(tmp_path))
    http = visitor_of(registry, "admin").http
    for url in (
        "/ui/repositories/UPPER/case",
        "/ui/repositories/a//b",
        "/ui/repositories/a/-/manifests/sha256:zz",
        "/ui/repositories/a/-/manifests/" + "x" * 300,
        "/ui/repositories/a/-/tags/-bad/delete",
        "/ui/repositories/a/-/manifests/latest/delete",
        "/ui/repositories/-/manifests/x",
        "/ui/?page=-1&sort=%3Cscript%3E&order=sideways",
        "/ui/?page=99999999999999999999",
        "/ui/?q=" + "a" * 5000,
        "/ui/storage?sort=unique&page=0",
        "/ui/login?next=javascript:alert(1)",
    ):
        r = http.get(url)
        assert r.status_code < 500, (url, r.status_code)
        assert r.headers["content-type"].startswith("text/html"), url
        assert "<script>" not in r.text, url
    # No UI route takes it: the routing's own 404.
    assert http.get("/ui/static/..%2Fui.css").status_code == 404
    for body in (b"\xff\xfe" * 10, b"csrf=" + b"x" * 20_000, b"%%%&&&==="):
        r = http.post(
            "/ui/login",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code in (403, 413), body[:20]


def test_a_deep_or_wide_referrers_tree_is_cut_and_says_so(make_registry: MakeRegistry) -> None:
    registry = make_registry()
    http = registry.client()
    base = images.image(layers=1, layer_size=64)
    images.push_image(http, "team/app", base, tag="v1")
    subject = base
    for level in range(5):  # a signature of a signature of ... five deep
        subject = content.referrer(subject, "application/vnd.example.sig", f"s{level}".encode())
        images.push_image(http, "team/app", subject)
    page = http.get("/ui/repositories/team/app/-/manifests/v1").text
    assert page.count('<ul class="tree">') == 4
    assert "More referrers exist than are shown" in page
    # Wide: three referrers of another image, two shown. (Not of ``base``: the budget is
    # spent in listing order, digest order, and its chain could come first and take it.)
    wide = images.image(layers=1, layer_size=64)
    images.push_image(http, "team/app", wide, tag="v2")
    for i in range(3):
        images.push_image(
            http, "team/app", content.referrer(wide, "application/x-many", bytes([i]))
        )
    contents = registry.app.state.ui.contents
    tree, truncated = registry.run(
        contents.referrers("team/app", Digest("sha256", wide.digest[7:]), shown=2)
    )
    assert len(tree) == 2 and truncated
