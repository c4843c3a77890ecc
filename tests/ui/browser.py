"""A real headless browser for the UI's page tests: Debian's chromium driven by
Playwright (no browser download: the system binary), and a registry process seeded with
real clients -- skopeo pushes a multi-arch index and an image, the ORAS Python client
pushes referrers (an SBOM, signatures, a signature of the SBOM) -- plus a usage snapshot
as the collector would write it. Screenshots go to ``test-output/ui/`` (or
``$UI_SCREENSHOTS``), for a reviewer to look at."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from registry.config import Config
from registry.store import RepositoryUsage, UsageSnapshot, open_store
from tests import images
from tests.auth.conftest import PASSWORD, auth_section, get_token
from tests.conftest import require_tool
from tests.server import RegistryServer
from tests.ui import content

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PUBLIC_TOOLS = 55  # more than a page of repositories for everyone
SBOM_TYPE = "application/spdx+json"
SIGNATURE_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
NOTATION_TYPE = "application/vnd.cncf.notary.signature"


def screenshot_dir() -> Path:
    folder = Path(os.environ.get("UI_SCREENSHOTS") or ROOT / "test-output" / "ui")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def chromium() -> str:
    """The system's chromium (Debian: /usr/bin/chromium); skip without it (fail in CI)."""
    return require_tool("chromium")


@dataclass
class Seeded:
    """What the seeded registry holds, as the tests look for it."""

    server: RegistryServer
    index: images.Image  # team-b/web:1.4.2 and :latest (three platforms)
    image: images.Image  # team-b/api:2.0, with referrers
    sbom_digest: str
    tools: list[str]  # public/tool-NN


def skopeo(workdir: Path, *args: str) -> None:
    cmd = [require_tool("skopeo"), "--insecure-policy", *args]
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(workdir / "auth.json")}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, f"{cmd}\n{done.stdout}\n{done.stderr}"


def skopeo_push(workdir: Path, img: images.Image, ref: str, user: str) -> None:
    layout = workdir / f"layout-{img.digest[7:19]}"
    if not layout.exists():
        images.write_oci_layout(layout, img, tag="push")
    skopeo(
        workdir,
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        f"{user}:{PASSWORD}",
        f"oci:{layout}:push",
        ref,
    )


def oras_attach(
    server: RegistryServer,
    workdir: Path,
    name: str,
    subject_digest: str,
    subject_size: int,
    artifact_type: str,
    payload: bytes,
    tag: str,
    filename: str,
    annotations: dict[str, str],
) -> str:
    """Push an artifact that refers to ``subject`` with the ORAS Python client; its
    digest. oras-py keeps one token whatever the scope, so it gets one for push."""
    import oras.client
    import oras.oci

    client = oras.client.OrasClient(hostname=server.host, insecure=True)
    with server.client() as http:
        client.auth.set_token_auth(get_token(http, f"repository:{name}:pull,push", user="carol"))
    folder = workdir / f"oras-{tag}"
    folder.mkdir()
    payload_file = folder / filename
    payload_file.write_bytes(payload)
    config_file = folder / "config.json"
    config_file.write_bytes(b"{}")
    response = client.push(
        target=f"{server.host}/{name}:{tag}",
        files=[f"{payload_file}:{artifact_type}"],
        disable_path_validation=True,
        manifest_config=f"{config_file}:{artifact_type}",
        manifest_annotations={"org.opencontainers.image.created": content.CREATED, **annotations},
        subject=oras.oci.Subject(
            mediaType=images.OCI_MANIFEST, digest=subject_digest, size=subject_size
        ),
        quiet=True,
    )
    assert response.status_code == 201, response.text
    digest: str = response.headers["Docker-Content-Digest"]
    return digest


def write_usage(server: RegistryServer, snapshot: UsageSnapshot) -> None:
    """Write a usage snapshot into the server's storage, as the collector does."""
    config = Config.model_validate(
        {"storage": {"filesystem": {"rootdirectory": str(server.data_dir)}}}
    )

    async def write() -> None:
        store = open_store(config)
        try:
            await store.usage.write(snapshot)
        finally:
            await store.close()

    # In a thread of its own: Playwright's sync API runs an event loop in this one.
    worker = threading.Thread(target=asyncio.run, args=(write(),))
    worker.start()
    worker.join()


def seed(server: RegistryServer, workdir: Path) -> Seeded:
    host = server.host
    index = content.app_index()
    for tag in ("1.4.2", "latest"):
        skopeo_push(workdir, index, f"docker://{host}/team-b/web:{tag}", "carol")
    image = content.app_image(layer_size=20_000)
    skopeo_push(workdir, image, f"docker://{host}/team-b/api:2.0", "carol")
    subject = image.digest
    sbom = oras_attach(
        server,
        workdir,
        "team-b/api",
        subject,
        len(image.manifest),
        SBOM_TYPE,
        json.dumps({"spdxVersion": "SPDX-2.3", "name": "api"}).encode(),
        f"sha256-{subject[7:]}.sbom",
        "api.spdx.json",
        {"org.example.sbom.generator": "syft 1.4"},
    )
    oras_attach(
        server,
        workdir,
        "team-b/api",
        subject,
        len(image.manifest),
        SIGNATURE_TYPE,
        b"MEUCIQD-signature",
        f"sha256-{subject[7:]}.sig",
        "signature.sig",
        {"dev.sigstore.cosign/certificate": "CN=ci@example.com"},
    )
    with server.client() as http:
        token = get_token(http, "repository:team-b/api:pull", user="carol")
        head = http.head(
            f"/v2/team-b/api/manifests/{sbom}",
            headers={"Authorization": f"Bearer {token}", "Accept": images.OCI_MANIFEST},
        )
        sbom_size = int(head.headers["Content-Length"])
    oras_attach(
        server,
        workdir,
        "team-b/api",
        sbom,
        sbom_size,
        NOTATION_TYPE,
        b"jws-envelope",
        f"sha256-{sbom[7:]}.sig",
        "sbom.jws",
        {"io.cncf.notary.x509chain.thumbprint#S256": '["ab12"]'},
    )
    # The same little image in many public repositories (a page and more), and two
    # tags in a repository bob may only read.
    tiny = images.image(layers=1, layer_size=2048)
    tools = [f"public/tool-{i:02d}" for i in range(PUBLIC_TOOLS)]
    with server.client() as http:
        scopes = [f"repository:{n}:pull,push" for n in [*tools, "team-a/app"]]
        http.headers["Authorization"] = "Bearer " + get_token(http, *scopes, user="admin")
        for name in tools:
            images.push_image(http, name, tiny, tag="1.0")
        for tag in ("v1", "v2"):
            images.push_image(http, "team-a/app", tiny, tag=tag)
    sizes = {
        "team-b/web": sum(len(b) for c in index.children for b in c.blobs.values()),
        "team-b/api": sum(len(b) for b in image.blobs.values()) + 4096,
        "team-a/app": sum(len(b) for b in tiny.blobs.values()),
        **{t: sum(len(b) for b in tiny.blobs.values()) for t in tools},
    }
    tiny_bytes = sum(len(b) for b in tiny.blobs.values())
    write_usage(
        server,
        UsageSnapshot(
            finished_at=time.time() - 1800,
            total_bytes=sizes["team-b/web"] + sizes["team-b/api"] + tiny_bytes,
            reclaimable_bytes=48_213,
            repositories=tuple(
                RepositoryUsage(
                    name,
                    held_bytes=held,
                    unique_bytes=held if name.startswith("team-b/") else 0,
                    manifests=1,
                    tags=1,
                )
                for name, held in sizes.items()
            ),
        ),
    )
    return Seeded(server, index, image, sbom, tools)


@pytest.fixture(scope="module")
def playwright_browser() -> Iterator[Any]:
    """Headless chromium (the system's), shared by the tests of one module. Not longer:
    Playwright's sync API runs an event loop in this thread while it is open, and
    async tests elsewhere in the session need the thread without one."""
    executable = chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        # Playwright gives the browser a temporary --user-data-dir of its own.
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_FLAGS
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Seeded:
    """A real `registry serve` (two workers, token auth, the auth tests' policy)."""
    workdir = tmp_path_factory.mktemp("ui-browser")
    auth = auth_section(workdir, "token", token={"key_file": str(workdir / "token.pem")})
    server = RegistryServer(workdir, {"auth": auth}, workers=2)
    server.start()
    request.addfinalizer(server.stop)
    return seed(server, workdir)


def api_tags(server: RegistryServer, name: str) -> list[str]:
    with server.client() as http:
        token = get_token(http, f"repository:{name}:pull", user="admin")
        r = http.get(f"/v2/{name}/tags/list", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        tags: list[str] = r.json()["tags"]
        return tags


def log_in(page: Any, base: str, user: str) -> None:
    page.goto(f"{base}/ui/login")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/ui/")
