"""Looking at a test server's storage directly, through the driver its config opens:
snapshots (for dry runs) and an independent account of what is reachable (for the
stress test), written from the documented layout rather than with the collector's code."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from registry.config import load_config
from registry.store import layout
from storage_backends import Driver, PathNotFoundError
from storage_backends.factory import open_driver
from tests.server import RegistryServer

T = TypeVar("T")

Snapshot = dict[str, tuple[int, float]]


def with_storage(server: RegistryServer, fn: Callable[[Driver], Awaitable[T]]) -> T:
    """Run ``fn`` with a driver on ``server``'s storage (as another process would)."""
    config = load_config(
        server.config_file,
        environ={"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(server.data_dir)},
    )

    async def run() -> T:
        driver = open_driver(config.storage)
        try:
            return await fn(driver)
        finally:
            await driver.close()

    return asyncio.run(run())


async def snapshot(driver: Driver) -> Snapshot:
    """Every stored file with its size and modification time."""
    out: Snapshot = {}
    for path in await driver.list("", recursive=True):
        try:
            info = await driver.stat(path)
        except PathNotFoundError:
            continue
        out[path] = (info.size, info.modified)
    return out


async def exists(driver: Driver, path: str) -> bool:
    try:
        await driver.stat(path)
    except PathNotFoundError:
        return False
    return True


def _digest(listed: str) -> str:
    return listed.replace("/", ":", 1)


@dataclass
class Account:
    """What the storage holds beyond what its tags reach, and what tags reach but is gone."""

    unreachable: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)  # "repo:tag" -> digest


async def account(driver: Driver) -> Account:
    """Mark from tags (index children, config and layers, referrers of kept manifests)
    and list everything else that is stored: revisions, links, blob data, tombstones
    and upload sessions. ``broken`` lists what a kept manifest needs but is missing."""
    result = Account()
    markers = await driver.list(layout.CATALOG, recursive=True)
    repos = [layout.catalog_name(m) for m in markers if m.endswith(layout.CATALOG_SUFFIX)]
    used_blobs: set[str] = set()
    for repo in repos:
        base = f"{layout.REPOSITORIES}/{repo}"
        revision_paths = await driver.list(f"{base}/_manifests/revisions", recursive=True)
        revisions = {_digest(p) for p in revision_paths}
        links = {_digest(p) for p in await driver.list(f"{base}/_layers", recursive=True)}
        referrers: dict[str, set[str]] = {}
        for entry in await driver.list(f"{base}/_referrers", recursive=True):
            subject, _, key = entry.rpartition("/")
            referrers.setdefault(_digest(subject), set()).add(key.replace("-", ":", 1))
        kept: set[str] = set()
        kept_blobs: set[str] = set()
        todo: list[str] = []
        for tag in await driver.list(f"{base}/_manifests/tags"):
            try:
                target = (await driver.get(f"{base}/_manifests/tags/{tag}")).decode()
            except PathNotFoundError:
                continue
            result.tags[f"{repo}:{tag}"] = target
            todo.append(target)
        while todo:
            digest = todo.pop()
            if digest in kept:
                continue
            kept.add(digest)
            if digest not in revisions:
                result.broken.append(f"{repo}: revision {digest}")
                continue
            alg, hexa = digest.split(":")
            try:
                doc = json.loads(await driver.get(f"{layout.BLOBS}/{alg}/{hexa[:2]}/{hexa}/data"))
            except PathNotFoundError:
                result.broken.append(f"{repo}: manifest content {digest}")
                continue
            todo += [c["digest"] for c in doc.get("manifests", [])]
            todo += sorted(referrers.get(digest, set()))
            if "config" in doc:
                for blob in [doc["config"], *doc.get("layers", [])]:
                    if not blob.get("urls"):
                        kept_blobs.add(blob["digest"])
        for blob in sorted(kept_blobs):
            alg, hexa = blob.split(":")
            if blob not in links:
                result.broken.append(f"{repo}: link {blob}")
            if not await exists(driver, f"{layout.BLOBS}/{alg}/{hexa[:2]}/{hexa}/data"):
                result.broken.append(f"{repo}: blob {blob}")
        result.unreachable += [f"{repo}: revision {d}" for d in sorted(revisions - kept)]
        result.unreachable += [f"{repo}: link {d}" for d in sorted(links - kept_blobs)]
        result.unreachable += [
            f"{repo}: upload {u}" for u in await driver.list(f"{base}/_uploads")
        ]
        used_blobs |= kept | kept_blobs
    uploading = await driver.list(layout.UPLOADING, recursive=True)
    for repo in sorted({layout.catalog_name(m) for m in uploading} - set(repos)):
        sessions = await driver.list(f"{layout.REPOSITORIES}/{repo}/_uploads")
        result.unreachable += [f"{repo}: upload {u}" for u in sessions]
    for alg in await driver.list(layout.BLOBS):
        for relative in await driver.list(f"{layout.BLOBS}/{alg}", recursive=True):
            parts = relative.split("/")  # <hex[:2]>/<hex>/<file>
            if len(parts) != 3:
                result.unreachable.append(f"blobs: stray {relative}")
                continue
            digest = f"{alg}:{parts[1]}"
            if parts[2] == "collecting":
                result.unreachable.append(f"blob {digest}: tombstone")
            elif digest not in used_blobs:
                result.unreachable.append(f"blob {digest}: {parts[2]}")
    return result
