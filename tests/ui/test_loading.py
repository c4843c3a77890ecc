"""A worker loads the UI on the first request to one of its paths, not before: a registry
that nobody browses never holds Jinja2 and the pages (registry/ui/__init__.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import httpx

from tests.asgi_registry import BASE_URL, InProcessRegistry


def _routes(registry: InProcessRegistry) -> list[str]:
    return [type(r).__name__ for r in registry.app.router.routes]


def test_api_requests_leave_the_ui_unloaded_and_the_first_page_loads_it() -> None:
    with InProcessRegistry() as registry, registry.client() as http:
        assert http.get("/v2/").status_code == 200
        assert http.get("/v2/a/manifests/latest").status_code == 404
        assert "_UiOnFirstRequest" in _routes(registry)
        assert not hasattr(registry.app.state, "ui")

        assert http.get("/", follow_redirects=False).headers["location"] == "/ui/"
        assert "_UiOnFirstRequest" not in _routes(registry)
        assert http.get("/ui/").status_code == 200
        assert http.get("/ui/no-such-page").status_code == 404
        assert http.get("/v2/").status_code == 200


def _loaded_once() -> list[str]:
    with InProcessRegistry() as registry, registry.client() as http:
        assert http.get("/ui/").status_code == 200
        return _routes(registry)


def test_concurrent_first_requests_load_the_ui_once() -> None:
    with InProcessRegistry() as registry:

        async def pages() -> list[httpx.Response]:
            transport = httpx.ASGITransport(app=registry.app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
                return await asyncio.gather(*(http.get("/ui/") for _ in range(8)))

        answers = registry.run(pages())
        assert [a.status_code for a in answers] == [200] * 8
        assert _routes(registry) == _loaded_once()


def test_a_worker_serving_the_api_does_not_import_jinja2() -> None:
    code = textwrap.dedent(
        """
        import sys
        from tests.asgi_registry import InProcessRegistry
        with InProcessRegistry() as registry, registry.client() as http:
            assert http.get("/v2/").status_code == 200
            before = "jinja2" in sys.modules
            assert http.get("/ui/").status_code == 200
            print(before, "jinja2" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
