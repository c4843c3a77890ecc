"""The storage layout: the one place that turns registry objects into driver paths.

::

    blobs/<alg>/<hex[:2]>/<hex>/data                      each blob once, content-addressed
    blobs/<alg>/<hex[:2]>/<hex>/claimed                   empty; modified = the last time a
                                                          push relied on the digest (GC)
    blobs/<alg>/<hex[:2]>/<hex>/collecting                tombstone: the garbage collector
                                                          is deleting what holds the digest
    repositories/<name>/_layers/<alg>/<hex>               blob linked into a repository
    repositories/<name>/_manifests/revisions/<alg>/<hex>  manifest in a repository (JSON:
                                                          mediaType, size, subject)
    repositories/<name>/_manifests/tags/<tag>             tag -> manifest digest
    repositories/<name>/_referrers/<alg>/<hex>/<alg>-<h>  descriptor of a referrer of <hex>
    repositories/<name>/_uploads/<id>/data                upload session bytes
    repositories/<name>/_uploads/<id>/state               upload session: when it started
                                                          (JSON)
    repositories/<name>/_uploads/<id>/sha256-<offset>     SHA-256 (hex) of the session's
                                                          first <offset> bytes; empty when
                                                          not known (one per request: a new
                                                          file, never a replaced one)
    catalog/<name>!                                       one marker per repository
    uploading/<name>!                                     marker: <name> has had upload
                                                          sessions (the collector purges
                                                          expired ones; never removed)
    gc/lease                                              the lease named "gc": who collects
                                                          garbage now (JSON)
    gc/clock                                              written to read the storage's time
    leases/<name>                                         every other named lease (JSON)
    clocks/<name>                                         the clock probe of every other name
    maintenance/readonly                                  read-only maintenance flag (JSON)
    gc/usage                                              what the last collection counted (JSON)
    gc/mark/summary                                       what the last mark learned, in sum
                                                          (store/mark_state.py, JSON)
    gc/mark/running                                       a collection is writing the mark
                                                          state; left by a crashed one
    gc/mark/repositories/<name>!                          what the last mark learned about one
                                                          repository (JSON)
    gc/mark/blobs/<alg>/<hex[:2]>                         which repositories keep each blob of
                                                          one shard, with its size (JSON)
    gc/changed/<name>!/<cover>-<id>                       empty; <name> changed since the
                                                          collector last looked (store/changed.py)
    login-attempts/<epoch>/<subject>/<ms>-<random>        one empty object per login attempt
                                                          (store/login_attempts.py)
    tag-intents/<name>/_tags/<tag>/<ms>-<alg>-<hex>       empty: a push is about to create an
                                                          immutable tag (store/tag_intents.py)
    quotas/<ledger>/e-<ms>-<random>                       one usage journal entry (JSON)
    quotas/<ledger>/c-<ms>-<random>                       a checkpoint of the folded journal
    quotas/<ledger>/r-<ms>-<bytes>-<id>                   empty: bytes a push in flight holds
                                                          (all three: store/usage_log.py)
    events/pending/<time>-<instance>                      a change recorded before it became
                                                          visible, with its events (JSON)
    events/settled/<time>-<instance>                      empty: the request that recorded it
                                                          has ended in an error
    events/queues/<kind>/<name>/<seq>                     confirmed events waiting for one
                                                          consumer, from event <seq> on (JSON)
    events/cursors/<kind>/<name>                          how far that consumer got (JSON)
    events/dead/<kind>/<name>/<seq>                       its dead letters (JSON)
                                                          (store/outbox.py, registry/events/)
    repositories/<name>/_proxy/tags/<tag>                 pull-through cache: when the tag
                                                          was last checked upstream (JSON)
    repositories/<name>/_proxy/pulled/<alg>/<hex>         empty; modified = when the cached
                                                          manifest was last pulled (roughly)
    repositories/<name>/_proxy/referrers/<alg>/<hex>      the upstream's referrers list of a
                                                          subject, as last fetched (JSON)
    proxy/fills/<alg>/<hex>                               a process fetching the blob from an
                                                          upstream now (JSON; store/proxy.py)
    pushed/<name>!/<ms>                                   empty; <name> was last pushed to at
                                                          <ms> (store/pushes.py)
    ui/session-keys/<id>                                  a key that signs web UI sessions
                                                          (store/session_keys.py)
    replication/<rule>/status/<writer>                    what a rule's event deliveries or
                                                          full passes did last and in total
    replication/<rule>/failures/<key>                     an artifact that failed to copy or
                                                          delete, with the reason (JSON)
    replication/<rule>/uploads/<key>                      a blob upload in flight: where it
                                                          resumes (all three:
                                                          store/replication.py)

The gc lease and clock keep the paths they had before leases had names, so that during a
rolling upgrade an old and a new process still exclude each other.

Repository name components cannot start with ``_`` (grammar), so ``_layers`` and the
rest never clash with a nested repository. The catalog marker ends in ``!``, which
sorts below every character a name may hold, so byte order of the markers is the
lexical order of the names, prefixes first (``a`` < ``a-b`` < ``a/b``): one flat,
paginated listing answers ``/v2/_catalog`` on every driver.

Every argument must already be validated by ``registry.reference``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from registry.errors import RegistryError
from registry.reference import Digest, parse_digest
from registry.store.objects import (
    BlobClaim,
    BlobData,
    Link,
    ReferrerEntry,
    Revision,
    StoredObject,
    Tag,
)

BLOBS = "blobs"
REPOSITORIES = "repositories"
CATALOG = "catalog"
CATALOG_SUFFIX = "!"
UPLOADING = "uploading"
# The files of a blob's folder.
DATA = "data"
CLAIMED = "claimed"
COLLECTING = "collecting"  # sorts before DATA: a listing reads it first
GC = "gc"
MARK = "gc/mark"
CHANGED = "gc/changed"
LOGIN_ATTEMPTS = "login-attempts"
LEASES = "leases"
TAG_INTENTS = "tag-intents"
QUOTAS = "quotas"
PUSHED = "pushed"
PUSHED_DIGITS = 15  # milliseconds since the epoch, zero-padded: byte order is time order
SESSION_KEYS = "ui/session-keys"
CLOCKS = "clocks"
EVENTS = "events"
# Consumers of the event outbox: a kind (who reads) and a name (one path component).
CONSUMER_KINDS = ("endpoint", "replication")
_CONSUMER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_OUTBOX_KEY = re.compile(r"^[0-9]{17}-[0-9a-f]{8,32}$")
REPLICATION = "replication"
_RULE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,49}$")
_REPLICATION_KEY = re.compile(r"^[0-9a-f]{64}$")
REPLICATION_WRITERS = ("events", "runs")
# Names of leases and clocks: one path component, as the features that hold them are named.
_LEASE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def blob_data(digest: Digest) -> str:
    return f"{BLOBS}/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}/{DATA}"


def blob_dir(digest: Digest) -> str:
    return f"{BLOBS}/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}"


def blob_claimed(digest: Digest) -> str:
    return f"{blob_dir(digest)}/{CLAIMED}"


def blob_collecting(digest: Digest) -> str:
    return f"{blob_dir(digest)}/{COLLECTING}"


def blob_shards(algorithm: str) -> str:
    """The folder of the ``<hex[:2]>`` shards of one algorithm."""
    return f"{BLOBS}/{algorithm}"


def blob_shard(algorithm: str, shard: str) -> str:
    return f"{BLOBS}/{algorithm}/{shard}"


def blob_shard_id(shard: str) -> tuple[str, str] | None:
    """``(algorithm, shard folder)`` of a shard id ``<alg>/<hex[:2]>``; None for anything else."""
    algorithm, _, folder = shard.partition("/")
    return (algorithm, folder) if algorithm and folder and "/" not in folder else None


def blob_file_in_shard(relative: str) -> tuple[str, str] | None:
    """``(hex, file name)`` of a path listed recursively below a shard, e.g.
    ``abcd.../claimed``; None for anything else."""
    parts = relative.split("/")
    return (parts[0], parts[1]) if len(parts) == 2 else None


def repository(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def layer_link(name: str, digest: Digest) -> str:
    return f"{REPOSITORIES}/{name}/_layers/{digest.algorithm}/{digest.hex}"


def layers(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_layers"


def revision(name: str, digest: Digest) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/revisions/{digest.algorithm}/{digest.hex}"


def revisions(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/revisions"


def tags(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/tags"


def tag(name: str, tag: str) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/tags/{tag}"


def tags_version(name: str) -> str:
    """Rewritten after every change to the repository's tags (store/tags.py)."""
    return f"{REPOSITORIES}/{name}/_manifests/tags.version"


def referrers(name: str, subject: Digest) -> str:
    return f"{REPOSITORIES}/{name}/_referrers/{subject.algorithm}/{subject.hex}"


def referrer(name: str, subject: Digest, referrer: Digest) -> str:
    return f"{referrers(name, subject)}/{referrer.algorithm}-{referrer.hex}"


def referrer_entry(name: str, subject: Digest, key: str) -> str:
    """A subject's entry by the key its listing gave (``<alg>-<hex>``)."""
    return f"{referrers(name, subject)}/{key}"


def referrers_index(name: str) -> str:
    """The referrer entries of every subject in ``name``."""
    return f"{REPOSITORIES}/{name}/_referrers"


def listed_digest(relative: str) -> Digest | None:
    """The digest of a path listed recursively below ``_layers``, ``revisions``
    (``<alg>/<hex>``) or a subject's referrers (``<alg>-<hex>``); None for anything else."""
    text = relative.replace("/", ":", 1) if "/" in relative else relative.replace("-", ":", 1)
    try:
        return parse_digest(text)
    except RegistryError:
        return None


def listed_digests(listing: Iterable[str]) -> set[Digest]:
    return {d for d in map(listed_digest, listing) if d is not None}


def uploads(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_uploads"


def upload_dir(name: str, upload_id: str) -> str:
    return f"{REPOSITORIES}/{name}/_uploads/{upload_id}"


def upload_data(name: str, upload_id: str) -> str:
    return f"{REPOSITORIES}/{name}/_uploads/{upload_id}/data"


def upload_state(name: str, upload_id: str) -> str:
    return f"{REPOSITORIES}/{name}/_uploads/{upload_id}/state"


UPLOAD_PROGRESS = "sha256-"


def upload_progress(name: str, upload_id: str, offset: int) -> str:
    return f"{REPOSITORIES}/{name}/_uploads/{upload_id}/{UPLOAD_PROGRESS}{offset}"


def catalog_marker(name: str) -> str:
    return f"{CATALOG}/{name}{CATALOG_SUFFIX}"


def readonly_flag() -> str:
    return "maintenance/readonly"


def mark_summary() -> str:
    return f"{MARK}/summary"


def mark_running() -> str:
    return f"{MARK}/running"


def mark_repositories() -> str:
    return f"{MARK}/repositories"


def mark_repository(name: str) -> str:
    return f"{MARK}/repositories/{name}{CATALOG_SUFFIX}"


def mark_shards() -> str:
    return f"{MARK}/blobs"


def mark_shard(algorithm: str, shard: str) -> str:
    """The blobs of one ``<alg>/<hex[:2]>`` shard, as ``blob_shard`` lists their folders."""
    return f"{MARK}/blobs/{algorithm}/{shard}"


def changed() -> str:
    return CHANGED


def changed_record(name: str, key: str) -> str:
    return f"{CHANGED}/{name}{CATALOG_SUFFIX}/{key}"


def changed_record_of(relative: str) -> tuple[str, str] | None:
    """``(repository, key)`` of a path listed recursively below ``gc/changed``; None for
    anything else. A name holds no ``!``, so the first ``!/`` ends it."""
    name, sep, key = relative.partition(CATALOG_SUFFIX + "/")
    return (name, key) if sep and name and key and "/" not in key else None


def usage_snapshot() -> str:
    """What the collector's last mark counted (store/usage.py)."""
    return f"{GC}/usage"


def login_attempts(epoch: int, subject_key: str) -> str:
    """The attempts of one subject (a hashed user name and address) in one epoch."""
    return f"{LOGIN_ATTEMPTS}/{epoch}/{subject_key}"


def tag_intents(name: str, tag: str) -> str:
    """The intents of pushes about to create ``name:tag``."""
    return f"{TAG_INTENTS}/{name}/_tags/{tag}"


def tag_intent(name: str, tag: str, record: str) -> str:
    return f"{tag_intents(name, tag)}/{record}"


def usage_ledger(ledger: str) -> str:
    """The journal, checkpoints and reservations of one quota's ledger (a checked name)."""
    return f"{QUOTAS}/{ledger}"


def usage_record(ledger: str, record: str) -> str:
    return f"{QUOTAS}/{ledger}/{record}"


def pushed_markers() -> str:
    """The folder of every repository's last-push marker."""
    return PUSHED


def pushed_marker(name: str, at_ms: int) -> str:
    return f"{pushed_folder(name)}/{at_ms:0{PUSHED_DIGITS}d}"


def pushed_folder(name: str) -> str:
    """The folder of ``name``'s markers: ``<name>!`` (``!`` sorts below every character
    a name may hold, so a recursive listing of ``pushed/`` is in name order, and the
    marker folder of a longest component still fits a file name)."""
    return f"{PUSHED}/{name}{CATALOG_SUFFIX}"


def pushed_entry(relative: str) -> tuple[str, int] | None:
    """``(name, ms)`` of a marker path relative to ``pushed/``; None for anything else."""
    folder, slash, stamp = relative.rpartition("/")
    name = folder.removesuffix(CATALOG_SUFFIX)
    if not slash or name == folder or not name or len(stamp) != PUSHED_DIGITS:
        return None
    return (name, int(stamp)) if stamp.isdigit() else None


def session_keys() -> str:
    return SESSION_KEYS


def session_key(key_id: str) -> str:
    return f"{SESSION_KEYS}/{key_id}"


def check_lease_name(name: str) -> str:
    """``name`` if it may name a lease or a clock, else ValueError."""
    if not _LEASE_NAME.match(name):
        raise ValueError(f"invalid lease or clock name: {name!r}")
    return name


def lease(name: str) -> str:
    return f"{GC}/lease" if name == GC else f"{LEASES}/{check_lease_name(name)}"


def clock_probe(name: str) -> str:
    return f"{GC}/clock" if name == GC else f"{CLOCKS}/{check_lease_name(name)}"


def check_consumer(consumer: str) -> str:
    """``consumer`` (``<kind>/<name>``) if it may name an outbox consumer, else ValueError."""
    kind, _, name = consumer.partition("/")
    if kind not in CONSUMER_KINDS or not _CONSUMER_NAME.match(name):
        raise ValueError(f"invalid event consumer: {consumer!r}")
    return consumer


def check_outbox_key(key: str) -> str:
    if not _OUTBOX_KEY.match(key):
        raise ValueError(f"invalid outbox key: {key!r}")
    return key


def outbox_pending() -> str:
    return f"{EVENTS}/pending"


def outbox_record(key: str) -> str:
    return f"{EVENTS}/pending/{check_outbox_key(key)}"


def outbox_settled() -> str:
    return f"{EVENTS}/settled"


def outbox_settled_marker(key: str) -> str:
    return f"{EVENTS}/settled/{check_outbox_key(key)}"


def outbox_consumers(area: str) -> str:
    """``events/queues``, ``events/cursors`` or ``events/dead``."""
    return f"{EVENTS}/{area}"


def outbox_queue(consumer: str) -> str:
    return f"{EVENTS}/queues/{check_consumer(consumer)}"


def outbox_segment(consumer: str, seq: int) -> str:
    return f"{outbox_queue(consumer)}/{seq:016d}"


def outbox_cursor(consumer: str) -> str:
    return f"{EVENTS}/cursors/{check_consumer(consumer)}"


def outbox_dead(consumer: str) -> str:
    return f"{EVENTS}/dead/{check_consumer(consumer)}"


def outbox_dead_letter(consumer: str, seq: int) -> str:
    return f"{outbox_dead(consumer)}/{seq:016d}"


def proxy_tag(name: str, tag: str) -> str:
    return f"{REPOSITORIES}/{name}/_proxy/tags/{tag}"


def proxy_pulled_dir(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_proxy/pulled"


def proxy_pulled(name: str, digest: Digest) -> str:
    return f"{proxy_pulled_dir(name)}/{digest.algorithm}/{digest.hex}"


def proxy_referrers(name: str, subject: Digest) -> str:
    return f"{REPOSITORIES}/{name}/_proxy/referrers/{subject.algorithm}/{subject.hex}"


def proxy_fill(digest: Digest) -> str:
    return f"proxy/fills/{digest.algorithm}/{digest.hex}"


def check_rule_name(rule: str) -> str:
    if not _RULE_NAME.match(rule):
        raise ValueError(f"invalid replication rule name: {rule!r}")
    return rule


def check_replication_key(key: str) -> str:
    if not _REPLICATION_KEY.match(key):
        raise ValueError(f"invalid replication key: {key!r}")
    return key


def replication_rule(rule: str) -> str:
    return f"{REPLICATION}/{check_rule_name(rule)}"


def replication_status(rule: str, writer: str) -> str:
    if writer not in REPLICATION_WRITERS:
        raise ValueError(f"invalid replication status writer: {writer!r}")
    return f"{replication_rule(rule)}/status/{writer}"


def replication_failures(rule: str) -> str:
    return f"{replication_rule(rule)}/failures"


def replication_failure(rule: str, key: str) -> str:
    return f"{replication_failures(rule)}/{check_replication_key(key)}"


def replication_uploads(rule: str) -> str:
    return f"{replication_rule(rule)}/uploads"


def replication_upload(rule: str, key: str) -> str:
    return f"{replication_uploads(rule)}/{check_replication_key(key)}"


def uploading_marker(name: str) -> str:
    return f"{UPLOADING}/{name}{CATALOG_SUFFIX}"


def catalog_name(marker: str) -> str:
    """The repository name of a marker path relative to ``catalog/``."""
    return marker.removesuffix(CATALOG_SUFFIX)


def path_of(obj: StoredObject) -> str:
    """Where a stored object lives."""
    match obj:
        case Tag(repository=repo, name=t):
            return tag(repo, t)
        case Revision(repository=repo, digest=d):
            return revision(repo, d)
        case Link(repository=repo, digest=d):
            return layer_link(repo, d)
        case ReferrerEntry(repository=repo, subject=subject, referrer=r):
            return referrer(repo, subject, r)
        case BlobData(digest=d):
            return blob_data(d)
        case BlobClaim(digest=d):
            return blob_claimed(d)
