"""The API suite's targets: every test runs in this process over the memory driver and
against the real processes; a test that asks for ``api_server`` (sockets, the server
log) runs on the real processes only. One registry per target serves the whole suite
(tests use their own repository names): a 4-worker server takes seconds to start."""

from __future__ import annotations

import pytest

from tests.conftest import API_TARGETS, REAL_TARGETS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "api_target" in metafunc.fixturenames:
        targets = REAL_TARGETS if "api_server" in metafunc.fixturenames else API_TARGETS
        metafunc.parametrize("api_target", targets, indirect=True, scope="session")
