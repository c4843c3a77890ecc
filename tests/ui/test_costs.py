"""What a page costs in storage requests does not grow with the registry: the
repository list reads the same few objects for 60 repositories and for 600, whatever
the sort; a page of tags sorted by name opens only the tags it shows."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from registry.store import RegistryStore, RepositoryUsage, UsageSnapshot
from storage_backends import FileInfo, FileWriter
from storage_backends.memory import MemoryDriver
from tests import images
from tests.asgi_registry import InProcessRegistry

MakeRegistry = Callable[..., InProcessRegistry]


class CountingDriver:
    """A MemoryDriver that counts its calls by operation."""

    def __init__(self) -> None:
        self.inner = MemoryDriver()
        self.name = self.inner.name
        self.calls: Counter[str] = Counter()

    async def get(self, path: str) -> bytes:
        self.calls["get"] += 1
        return await self.inner.get(path)

    async def put(self, path: str, data: bytes) -> None:
        self.calls["put"] += 1
        await self.inner.put(path, data)

    def read(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        self.calls["read"] += 1
        return self.inner.read(path, offset, length)

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        self.calls["writer"] += 1
        return await self.inner.writer(path, append)

    async def stat(self, path: str) -> FileInfo:
        self.calls["stat"] += 1
        return await self.inner.stat(path)

    async def list(self, prefix: str, **kwargs: Any) -> list[str]:
        self.calls["list"] += 1
        return await self.inner.list(prefix, **kwargs)

    async def move(self, src: str, dst: str) -> None:
        self.calls["move"] += 1
        await self.inner.move(src, dst)

    async def delete(self, path: str) -> None:
        self.calls["delete"] += 1
        await self.inner.delete(path)

    async def delete_many(self, paths: Sequence[str]) -> None:
        self.calls["delete_many"] += 1
        await self.inner.delete_many(paths)

    async def url_for(self, path: str, expires_in: int = 1200) -> str | None:
        return None

    async def close(self) -> None:
        await self.inner.close()


def repositories(make_registry: MakeRegistry, count: int) -> tuple[InProcessRegistry, Counter[str]]:
    driver = CountingDriver()
    registry = make_registry(driver=driver)
    store: RegistryStore = registry.app.state.store
    names = [f"org/repo-{i:04d}" for i in range(count)]

    async def generate() -> None:
        for i, name in enumerate(names):
            await store.catalog.add(name)
            await store.pushes.record(name, at=1_700_000_000 + i)
        usage = tuple(RepositoryUsage(n, held_bytes=i) for i, n in enumerate(names))
        await store.usage.write(UsageSnapshot(1_700_000_000, 1, 0, usage))

    registry.run(generate())
    return registry, driver.calls


def page_costs(registry: InProcessRegistry, calls: Counter[str], url: str) -> Counter[str]:
    http = registry.client()
    http.get(url)  # the first view reads the session keys and the like once
    calls.clear()
    assert http.get(url).status_code == 200
    return Counter(calls)


def test_the_repository_list_costs_the_same_for_ten_times_the_repositories(
    make_registry: MakeRegistry,
) -> None:
    small, small_calls = repositories(make_registry, 60)
    large, large_calls = repositories(make_registry, 600)
    for url in ("/ui/", "/ui/?page=2", "/ui/?sort=pushed", "/ui/?sort=size", "/ui/?q=repo-00"):
        few = page_costs(small, small_calls, url)
        many = page_costs(large, large_calls, url)
        assert few == many, url
        assert sum(many.values()) <= 5, (url, many)
    # The usage count is read again only when it changed: a stat otherwise.
    assert page_costs(large, large_calls, "/ui/storage") == Counter(stat=1)
    store: RegistryStore = large.app.state.store
    counted = UsageSnapshot(1_700_000_500, 1, 0, (RepositoryUsage("org/recounted", 123),))
    large.run(store.usage.write(counted))
    large_calls.clear()
    page = large.client().get("/ui/storage")
    assert "org/recounted" in page.text and large_calls == Counter(stat=1, get=1)


def test_a_page_of_tags_opens_only_the_tags_it_shows(make_registry: MakeRegistry) -> None:
    costs = {}
    for count in (60, 300):
        driver = CountingDriver()
        registry = make_registry(driver=driver)
        http = registry.client()
        img = images.image(layers=1, layer_size=64)
        images.push_image(http, "team/app", img)
        for i in range(count):
            r = http.put(
                f"/v2/team/app/manifests/t{i:04d}",
                content=img.manifest,
                headers={"Content-Type": img.media_type},
            )
            assert r.status_code == 201
        costs[count] = page_costs(registry, driver.calls, "/ui/repositories/team/app")
        by_version = page_costs(registry, driver.calls, "/ui/repositories/team/app?sort=version")
        assert by_version == costs[count]
        # By push time every tag's time is needed: one stat each (and no more).
        pushed = page_costs(registry, driver.calls, "/ui/repositories/team/app?sort=pushed")
        assert pushed["stat"] - costs[count]["stat"] == count - 50
    assert costs[60] == costs[300]
