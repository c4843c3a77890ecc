"""Helpers of the remote client's tests: settings for a remote, and content seeded into
the registries with plain HTTP clients (independent of the code under test)."""

from __future__ import annotations

from typing import Any

from registry.reference import Digest, parse_digest
from registry.remote import RemoteSettings
from tests.auth.conftest import PASSWORD, get_token, token_client
from tests.distribution import DistributionServer
from tests.images import Image, push_image
from tests.server import RegistryServer


def settings(
    url: str, user: str | None = None, password: str = PASSWORD, **extra: Any
) -> RemoteSettings:
    doc: dict[str, Any] = {"url": url, **extra}
    if user is not None:
        doc["credentials"] = {"username": user, "password": password}
    return RemoteSettings.model_validate(doc)


def seed(
    server: RegistryServer | DistributionServer, repo: str, img: Image, tag: str | None = "v1"
) -> None:
    """Push ``img`` (as admin on this registry; as the first user on distribution)."""
    if isinstance(server, DistributionServer):
        with server.client() as c:
            push_image(c, repo, img, tag)
        return
    with server.client() as c:
        token = get_token(c, f"repository:{repo}:pull,push", user="admin")
    with token_client(server, token) as c:
        push_image(c, repo, img, tag)


def digests(img: Image) -> list[tuple[Digest, bytes]]:
    return [(parse_digest(d), data) for d, data in img.blobs.items()]
