"""uvicorn's server without its command line.

``uvicorn/__init__.py`` imports ``uvicorn.main``, and with it click, the reloader
(watchfiles) and the multiprocess supervisor (multiprocessing): about 60 modules and
3 MiB in every worker, which ``registry serve`` never uses -- it has a command line and
a supervisor of its own and runs uvicorn's Server itself (registry/server.py).
``load_without_main`` registers the package without running that file, so that its
parts (``uvicorn.config``, ``uvicorn.server``, the protocols) import as usual; the
names the file would have defined (``uvicorn.run``, ``uvicorn.main``...) run it on
first use, so nothing that asks for them sees a difference.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import Any


def load_without_main() -> None:
    """Call before anything imports uvicorn; a no-op once it is imported."""
    if "uvicorn" in sys.modules:
        return
    spec = importlib.util.find_spec("uvicorn")
    if spec is None or spec.loader is None:
        return
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def complete(name: str) -> Any:
        # The names uvicorn/__init__.py defines: run it now, in the package itself.
        del vars(package)["__getattr__"]
        loader.exec_module(package)
        return getattr(package, name)

    vars(package)["__getattr__"] = complete  # PEP 562: asked for names it lacks
    sys.modules["uvicorn"] = package
    # uvicorn.lifespan.on imports Config from the package itself.
    config: ModuleType = importlib.import_module("uvicorn.config")
    package.Config = config.Config  # type: ignore[attr-defined]
