"""Rules are reloaded when the configuration file changes: a changed rule gets a new
runner (its event consumer follows it), a removed rule stops taking events, a new push
rule waits for a restart to follow events, and a file that does not validate leaves the
running rules as they are."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from registry.config import load_config
from registry.events import EventService
from registry.replication.service import ReplicationService
from registry.store import RegistryStore
from storage_backends.memory import MemoryDriver

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def rule(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "direction": "push", "remote": {"url": "http://b.invalid"}, **fields}


def write(path: Path, rules: list[dict[str, Any]], bump: int) -> None:
    path.write_text(yaml.safe_dump({"replication": {"rules": rules}}))
    os.utime(path, (1_000_000 + bump, 1_000_000 + bump))  # a changed stamp, surely


async def test_rules_follow_the_configuration_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "config.yml"
    write(path, [rule("a"), rule("b"), rule("gone")], 0)
    config = load_config(path, environ={})
    store = RegistryStore(MemoryDriver())
    events = EventService(store, config)
    service = ReplicationService(store, config, events, config_file=str(path))
    consumers = service.consumers
    assert set(consumers) == {"a", "b", "gone"}
    before_a, before_b = service.runners["a"], service.runners["b"]
    assert not await service.reload_if_changed()  # nothing changed

    write(path, [rule("a"), rule("b", mapping={"prefix": "dr/"}), rule("new")], 1)
    assert await service.reload_if_changed()

    assert service.runners["a"] is before_a  # unchanged: the same runner
    assert service.runners["b"] is not before_b
    assert service.runners["b"].rule.mapping.target("x") == "dr/x"
    assert consumers["b"].runner is service.runners["b"]
    assert consumers["gone"].runner is None and "gone" not in service.runners
    assert "new" in service.runners and "new" not in consumers  # events after a restart
    assert before_b.client is None  # retired: closed, nothing was using it

    write(path, [rule("a", tags={"semver": ">=banana"})], 2)
    assert not await service.reload_if_changed()  # looked at, refused
    assert set(service.runners) == {"a", "b", "new"}
    assert "replication.rules.0.tags.semver: Value error, not a version" in caplog.text
    await service.stop()


async def test_changes_of_a_rule_are_listed(tmp_path: Path) -> None:
    config = load_config(None, environ={}, overrides={"replication.rules": [rule("a")]})
    store = RegistryStore(MemoryDriver())
    service = ReplicationService(store, config, EventService(store, config))
    new = load_config(
        None, environ={}, overrides={"replication.rules": [rule("a", deletes=True), rule("c")]}
    )
    changes = await service.apply(new.replication)
    assert "rule a changed" in changes and "rule c added" in changes
    assert any("follows events after the next restart" in c for c in changes)
    assert await service.apply(load_config(None, environ={}).replication) == [
        "rule a removed",
        "rule c removed",
    ]
    await service.stop()
