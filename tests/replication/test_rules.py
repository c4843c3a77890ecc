"""What a rule selects and where it puts it, as tables of cases (pure): repository and tag
filters (glob, ``**``, regex, semver, exclude), the mapping (prefix replace, flatten),
referrer tags, the events a push rule wants, and the configuration's refusals."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from registry.config import Config, ReplicationRuleConfig
from registry.events.model import Event, Target
from registry.reference import Digest
from registry.replication.consumer import job_of
from registry.replication.rules import Rule, referrer_subject, selected_tags
from registry.replication.state import Job

HEX = "a" * 64
SUBJECT = Digest("sha256", HEX)


def rule(**fields: Any) -> Rule:
    doc = {"name": "r", "direction": "push", "remote": {"url": "http://b.example:5000"}, **fields}
    return Rule.from_config(ReplicationRuleConfig.model_validate(doc))


REPOSITORY_CASES = [
    # (filter, name, selected)
    ({}, "app", True),
    ({}, "team/a/app", True),
    ({"include": ["team/*"]}, "team/app", True),
    ({"include": ["team/*"]}, "team/sub/app", False),
    ({"include": ["team/**"]}, "team/sub/app", True),
    ({"include": ["team/**"]}, "team", False),
    ({"include": ["**/base"]}, "base", True),
    ({"include": ["**/base"]}, "x/y/base", True),
    ({"include": ["app-?"]}, "app-1", True),
    ({"include": ["app-?"]}, "app-12", False),
    ({"include": ["team/**"], "exclude": ["team/tmp/**"]}, "team/tmp/x", False),
    ({"include": ["team/**"], "exclude": ["team/tmp/**"]}, "team/app", True),
    ({"regex": r"team/(web|api)-.*"}, "team/web-1", True),
    ({"regex": r"team/(web|api)-.*"}, "team/db-1", False),
    ({"regex": r"web"}, "team/web-1", False),  # the whole name must match
    ({"include": ["team/**"], "regex": r".*-prod"}, "other/x-prod", False),
]


@pytest.mark.parametrize(("repositories", "name", "selected"), REPOSITORY_CASES)
def test_repository_filter(repositories: dict[str, Any], name: str, selected: bool) -> None:
    assert rule(repositories=repositories).repositories.matches(name) is selected


TAG_CASES = [
    ({}, "latest", True),
    ({"include": ["v*"]}, "v1.2", True),
    ({"include": ["v*"]}, "latest", False),
    ({"include": ["*"], "exclude": ["*-rc*", "dev-*"]}, "1.2-rc1", False),
    ({"include": ["*"], "exclude": ["*-rc*", "dev-*"]}, "dev-x", False),
    ({"include": ["*"], "exclude": ["*-rc*", "dev-*"]}, "1.2", True),
    ({"regex": r"v\d+\.\d+\.\d+"}, "v1.2.3", True),
    ({"regex": r"v\d+\.\d+\.\d+"}, "v1.2.3-rc", False),
    ({"semver": ">=1.2 <2"}, "1.4.0", True),
    ({"semver": ">=1.2 <2"}, "v1.9.9", True),
    ({"semver": ">=1.2 <2"}, "2.0.0", False),
    ({"semver": ">=1.2 <2"}, "1.5.0-rc.1", False),  # pre-releases only when named
    ({"semver": ">=1.2 <2"}, "latest", False),  # not a version
    ({"semver": "^3.19"}, "3.20", True),  # two parts read as 3.20.0
    ({"semver": "~1.2"}, "1.3.0", False),
    ({"semver": "1.x || >=3"}, "2.1", False),
    ({"semver": "1.x || >=3"}, "3.0.0", True),
    ({"semver": ">=1", "exclude": ["1.0.*"]}, "1.0.1", False),
    ({"include": ["v*"], "semver": ">=2"}, "2.0.0", False),  # every condition holds
]


@pytest.mark.parametrize(("tags", "tag", "selected"), TAG_CASES)
def test_tag_filter(tags: dict[str, Any], tag: str, selected: bool) -> None:
    assert rule(tags=tags).tags.matches(tag) is selected


MAPPING_CASES = [
    # (mapping, source name, target name or None)
    ({}, "team/a/app", "team/a/app"),
    ({"prefix": "dr/"}, "team/app", "dr/team/app"),
    ({"strip": "team/", "prefix": "prod/"}, "team/a/app", "prod/a/app"),
    ({"strip": "team/", "prefix": "prod/"}, "other/app", None),  # lacks the prefix
    ({"strip": "team/"}, "team/app", "app"),
    ({"strip": "team", "prefix": "mirror-"}, "team-x/app", "mirror--x/app"),
    ({"flatten": 1}, "a/b/c/app", "b/c/app"),
    ({"flatten": 2, "prefix": "n/"}, "a/b/c/app", "n/c/app"),
    ({"flatten": 9}, "a/b/app", "app"),  # the last component always stays
    ({"flatten": "all", "prefix": "flat/"}, "a/b/c/app", "flat/app"),
    ({"strip": "team/", "flatten": 1, "prefix": "dr/"}, "team/a/app", "dr/app"),
    ({"prefix": "x-", "strip": "app"}, "app", None),  # nothing left after the prefix
    ({"prefix": "mirror/."}, "app", None),  # not a valid repository name
]


@pytest.mark.parametrize(("mapping", "source", "target"), MAPPING_CASES)
def test_mapping(mapping: dict[str, Any], source: str, target: str | None) -> None:
    r = rule(mapping=mapping)
    assert r.mapping.target(source) == target
    assert r.wants_repository(source) is (target is not None)


def test_referrer_tags() -> None:
    assert referrer_subject(f"sha256-{HEX}") == SUBJECT
    assert referrer_subject(f"sha256-{HEX}.sig") == SUBJECT
    assert referrer_subject(f"sha256-{HEX}.att") == SUBJECT
    assert referrer_subject(f"sha256-{HEX}.sbom") == SUBJECT
    assert referrer_subject(f"sha256-{HEX[:-1]}.sig") is None
    assert referrer_subject(f"sha256-{HEX}.txt") is None
    assert referrer_subject("latest") is None
    assert rule(tags={"include": ["v*"]}).wants_tag(f"sha256-{HEX}.sig")
    assert not rule(tags={"include": ["v*"]}, referrers=False).wants_tag(f"sha256-{HEX}.sig")


def test_a_pass_takes_referrer_tags_of_selected_images_only() -> None:
    other = "b" * 64
    tags = ["v1", "dev", f"sha256-{HEX}.sig", f"sha256-{other}.sig", f"sha256-{HEX}"]
    digests = {"v1": SUBJECT}
    r = rule(tags={"include": ["v*"]})
    assert selected_tags(r, tags, digests) == ["v1", f"sha256-{HEX}.sig", f"sha256-{HEX}"]
    assert selected_tags(rule(tags={"include": ["v*"]}, referrers=False), tags, digests) == ["v1"]


def event(action: str, kind: str, repository: str, **target: Any) -> Event:
    return Event(
        id="e",
        timestamp="2024-05-02T08:11:12Z",
        action=action,  # type: ignore[arg-type]
        kind=kind,  # type: ignore[arg-type]
        target=Target(repository, **target),
    )


EVENT_CASES = [
    # (event, job)
    (event("push", "manifest", "a", tag="v1", digest=f"sha256:{HEX}"), Job("copy", "a", "v1")),
    (
        event("push", "manifest", "a", digest=f"sha256:{HEX}"),
        Job("referrer", "a", f"sha256:{HEX}"),
    ),
    (event("delete", "tag", "a", tag="v1"), Job("untag", "a", "v1")),
    (
        event("delete", "manifest", "a", digest=f"sha256:{HEX}"),
        Job("delete", "a", f"sha256:{HEX}"),
    ),
    (event("push", "blob", "a", digest=f"sha256:{HEX}"), None),
    (event("mount", "blob", "a", digest=f"sha256:{HEX}"), None),
    (event("create", "repository", "a"), None),
]


@pytest.mark.parametrize(("e", "job"), EVENT_CASES)
def test_the_job_of_an_event(e: Event, job: Job | None) -> None:
    assert job_of(e) == job


def test_configuration_refusals() -> None:
    base = {"name": "r", "direction": "push", "remote": {"url": "http://b:5000"}}

    def refused(**change: Any) -> str:
        with pytest.raises(ValidationError) as info:
            Config.model_validate({"replication": {"rules": [{**base, **change}]}})
        return str(info.value)

    assert "pull rule cannot follow events" in refused(direction="pull", trigger={"events": True})
    assert "not a regular expression" in refused(tags={"regex": "("})
    assert "not a version" in refused(tags={"semver": ">=banana"})
    assert "must not be empty" in refused(tags={"semver": " "})
    assert "String should match pattern" in refused(name="Upper")
    assert "String should match pattern" in refused(mapping={"prefix": "Mirror/"})
    assert "greater than or equal to 0" in refused(mapping={"flatten": -1})
    assert "no path" in refused(remote={"url": "http://b:5000/v2"})
    assert "exactly one of" in refused(remote={"url": "http://b", "credentials": {"username": "u"}})
    with pytest.raises(ValidationError, match="two rules are named"):
        Config.model_validate({"replication": {"rules": [base, base]}})
    # Defaults: a push rule follows events, a pull rule does not.
    config = Config.model_validate(
        {"replication": {"rules": [base, {**base, "name": "p", "direction": "pull"}]}}
    )
    assert [r.on_events for r in config.replication.rules] == [True, False]


def test_rules_from_the_environment() -> None:
    from registry.config import load_config

    config = load_config(
        environ={
            "REGISTRY_REPLICATION_RULES": (
                '[{name: dr, direction: push, remote: {url: "https://dr.example"}, '
                'tags: {semver: "^1"}}]'
            )
        }
    )
    assert config.replication.rules[0].tags.semver == "^1"


def test_what_a_push_rule_follows() -> None:
    from registry.replication.consumer import ReplicationConsumer
    from registry.replication.runner import RuleRunner
    from registry.store import RegistryStore
    from storage_backends.memory import MemoryDriver

    def consumer(**fields: Any) -> ReplicationConsumer:
        doc = {"name": "r", "direction": "push", "remote": {"url": "http://b:5000"}, **fields}
        config = ReplicationRuleConfig.model_validate(doc)
        return ReplicationConsumer(RuleRunner(RegistryStore(MemoryDriver()), config))

    push = event("push", "manifest", "team/a", tag="v1", digest=f"sha256:{HEX}")
    untag = event("delete", "tag", "team/a", tag="v1")
    by_pull_rule = Event(**{**push.__dict__, "origin": "replication"})
    plain = consumer(repositories={"include": ["team/**"]})
    assert plain.wants(push)
    assert not plain.wants(by_pull_rule)  # no loops between sites
    assert not plain.wants(untag)  # deletes are off by default
    assert consumer(deletes=True).wants(untag)
    assert not consumer(repositories={"include": ["other/**"]}).wants(push)
    assert not consumer(tags={"include": ["v2*"]}).wants(push)
    signature = event("push", "manifest", "team/a", tag=f"sha256-{HEX}.sig", digest=f"sha256:{HEX}")
    assert consumer(tags={"include": ["v2*"]}).wants(signature)
    assert not consumer(tags={"include": ["v2*"]}, referrers=False).wants(signature)
    gone = consumer()
    gone.runner = None  # the rule was removed by a reload
    assert not gone.wants(push)
    assert plain.consumer_id == "replication/r"
    assert plain.policy.retry.maxretries >= 10**8  # never dead-lettered


def test_a_rule_caps_its_bandwidth() -> None:
    from registry.replication.runner import RuleRunner
    from registry.store import RegistryStore
    from storage_backends.memory import MemoryDriver

    doc = {"name": "r", "direction": "push", "remote": {"url": "http://b:5000"}}
    capped = ReplicationRuleConfig.model_validate({**doc, "max_bytes_per_second": "5MB"})
    runner = RuleRunner(RegistryStore(MemoryDriver()), capped)
    assert runner.client is not None and runner.client._session.bucket is not None
    assert runner.client._session.bucket.rate == 5_000_000
    free = RuleRunner(RegistryStore(MemoryDriver()), ReplicationRuleConfig.model_validate(doc))
    assert free.client is not None and free.client._session.bucket is None
