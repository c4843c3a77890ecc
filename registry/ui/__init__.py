"""The web UI at ``/ui/``: browse, inspect and clean up the registry in a browser, with
the registry's own users and roles (docs/ui.md). Server-rendered HTML (Jinja2), a
little JavaScript that nothing depends on for reading, every asset served from here."""

from __future__ import annotations

from fastapi import FastAPI

from registry.config import Config
from registry.store import RegistryStore
from registry.ui.contents import Contents
from registry.ui.render import Renderer
from registry.ui.routes import UiState, router
from registry.ui.sessions import SessionCodec


def install_ui(app: FastAPI, config: Config, store: RegistryStore) -> None:
    """Serve the UI from ``app`` (call only with ``ui.enabled``): its routes and its
    state. When each repository was last pushed is recorded by every process that
    writes (registry/listeners.py)."""
    app.state.ui = UiState(
        Renderer(),
        SessionCodec(store.session_keys, store.clock, config.ui.session_lifetime),
        Contents(store),
    )
    app.include_router(router)


__all__ = ["install_ui"]
