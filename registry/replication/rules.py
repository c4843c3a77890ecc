"""What a replication rule selects and where it puts it (pure: no I/O).

Filters apply to the names on the *source* side (this registry for a push rule, the
remote for a pull rule):

- repositories: ``include`` patterns (docs/patterns.md), minus ``exclude`` patterns, and,
  when given, a regular expression that the whole name must match;
- tags: the same, plus a semver range (registry/replication/semver.py) the tag must
  satisfy.

The mapping turns a source name into the target's: ``strip`` (a literal prefix) is
removed -- names without it are not replicated --, then ``flatten`` leading components
are dropped (``all``: only the last one stays), then ``prefix`` is prepended::

    team/a/app   strip "team/", flatten 1, prefix "dr/"   ->   dr/app

Referrer tags -- the referrers tag schema's ``sha256-<hex>`` and cosign's
``sha256-<hex>.sig``/``.att``/``.sbom`` -- go along with their subject when a rule
copies referrers, whatever the tag filter says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from registry.patterns import WILDCARDS, literal_prefix, matches_any
from registry.reference import ALGORITHMS, Digest, is_valid_name
from registry.replication.semver import VersionRange, parse_range

if TYPE_CHECKING:
    from registry.config import ReplicationRuleConfig

Direction = Literal["push", "pull"]

_REFERRER_TAG = re.compile(r"^(sha256|sha512)-([0-9a-f]+)(?:\.(sig|att|sbom))?$")
COSIGN_SUFFIXES = ("sig", "att", "sbom")


def referrer_subject(tag: str) -> Digest | None:
    """The subject a referrer tag belongs to, or None when ``tag`` is not one."""
    m = _REFERRER_TAG.match(tag)
    if m is None or len(m.group(2)) != ALGORITHMS[m.group(1)]:
        return None
    return Digest(m.group(1), m.group(2))


def cosign_tags(subject: Digest) -> list[str]:
    return [f"{subject.algorithm}-{subject.hex}.{s}" for s in COSIGN_SUFFIXES]


@dataclass(frozen=True)
class NameFilter:
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    regex: re.Pattern[str] | None = None
    versions: VersionRange | None = None  # tags only

    def matches(self, name: str) -> bool:
        return (
            matches_any(self.include, name)
            and not matches_any(self.exclude, name)
            and (self.regex is None or self.regex.fullmatch(name) is not None)
            and (self.versions is None or self.versions.matches_tag(name))
        )

    def literal_names(self) -> list[str] | None:
        """The names when every include pattern is a plain name: the remote need not
        list its catalog then (Docker Hub and others have none)."""
        if any(c in p for p in self.include for c in WILDCARDS):
            return None
        return [n for n in self.include if self.matches(n)]

    def prefixes(self) -> tuple[str, ...]:
        """Literal prefixes every matching name starts with (for a catalog listing)."""
        return tuple(sorted({literal_prefix(p) for p in self.include}))


@dataclass(frozen=True)
class Mapping:
    strip: str = ""
    prefix: str = ""
    flatten: int | None = 0  # None: all levels (the last component only)

    def target(self, name: str) -> str | None:
        """The target's name for ``name``; None when the rule does not map it (it lacks
        ``strip``, or the result is not a valid repository name)."""
        if not name.startswith(self.strip):
            return None
        rest = name[len(self.strip) :]
        parts = [p for p in rest.split("/") if p]
        if not parts:
            return None
        keep = 1 if self.flatten is None else max(1, len(parts) - self.flatten)
        mapped = self.prefix + "/".join(parts[-keep:])
        return mapped if is_valid_name(mapped) else None


@dataclass(frozen=True)
class Rule:
    """One rule as the copier and the scheduler use it."""

    name: str
    direction: Direction
    repositories: NameFilter
    tags: NameFilter
    mapping: Mapping = Mapping()
    referrers: bool = True
    deletes: bool = False
    on_events: bool = False
    interval: float | None = None
    parallel: int = 4
    chunk_size: int = 64 * 1024 * 1024
    remote: str = ""  # the remote's URL, for status and logs

    @property
    def consumer_id(self) -> str:
        return f"replication/{self.name}"

    @property
    def lease_name(self) -> str:
        return f"replication-{self.name}"

    def wants_repository(self, name: str) -> bool:
        return self.repositories.matches(name) and self.mapping.target(name) is not None

    def wants_tag(self, tag: str) -> bool:
        """A tag the filter selects, or a referrer tag when referrers go along."""
        if self.tags.matches(tag):
            return True
        return self.referrers and referrer_subject(tag) is not None

    @classmethod
    def from_config(cls, config: ReplicationRuleConfig) -> Rule:
        repos, tags, mapping = config.repositories, config.tags, config.mapping
        return cls(
            name=config.name,
            direction=config.direction,
            repositories=NameFilter(
                tuple(repos.include),
                tuple(repos.exclude),
                re.compile(repos.regex) if repos.regex else None,
            ),
            tags=NameFilter(
                tuple(tags.include),
                tuple(tags.exclude),
                re.compile(tags.regex) if tags.regex else None,
                parse_range(tags.semver) if tags.semver else None,
            ),
            mapping=Mapping(
                mapping.strip, mapping.prefix, None if mapping.flatten == "all" else mapping.flatten
            ),
            referrers=config.referrers,
            deletes=config.deletes,
            on_events=config.on_events,
            interval=config.trigger.interval,
            parallel=config.parallel,
            chunk_size=config.chunk_size,
            remote=config.remote.url,
        )


def selected_tags(rule: Rule, tags: Iterable[str], digests: dict[str, Digest]) -> list[str]:
    """The tags of one repository a full pass replicates, referrer tags last: those the
    filter selects, and the referrer tags of their manifests (``digests``: tag ->
    digest of the selected tags)."""
    chosen = [t for t in tags if rule.tags.matches(t)]
    if not rule.referrers:
        return chosen
    subjects = {digests[t] for t in chosen if t in digests}
    extra = [
        t
        for t in tags
        if t not in chosen and (subject := referrer_subject(t)) is not None and subject in subjects
    ]
    return chosen + extra
