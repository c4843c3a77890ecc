"""The S3 mode of the benchmark harness: both registries on one throwaway Ceph RGW.

``compare.py --storage s3`` starts a one-node RGW for the run (tests/rgw.py) and gives
each server a key prefix of its own in one bucket: CNCF distribution with its S3 driver
and the in-memory blob descriptor cache of its sample configuration, this registry with
its S3 driver and defaults (the read cache on, ttl 5 s). The scenarios do not know: an
``S3Storage`` answers the harness's ``Storage`` questions (each server's storage
configuration, and clearing what a server stored) as ``FilesystemStorage`` does.

RGW (monitor, OSD, radosgw) runs on the same cores as the servers and the load tools:
every figure includes its share of the machine. Its beast frontend runs with
``tcp_nodelay=1`` (see tests/rgw.py): without it each S3 response with a body waits
~40 ms for a delayed ACK, for both servers alike.

In compare.py, two lines wire it: ``s3_storage.add_argument(parser)`` in ``main`` and,
where the storage is made, ``storage = stack.enter_context(s3_storage.chosen(args,
FilesystemStorage(tmp)))`` (``stack`` a ``contextlib.ExitStack`` of the run).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from tests.rgw import RgwServer, missing_binaries, running_rgw
from tests.server import RegistryServer


class Storage(Protocol):
    """What the harness asks of a storage (compare.py's ``Storage``)."""

    name: str

    def distribution(self, server: str) -> dict[str, Any]: ...

    def registry(self, server: str) -> dict[str, str]: ...

    def clear(self, server: str) -> None: ...

    def holds(self, data: int) -> int:
        """The memory the storage may come to hold for ``data`` bytes of live data (the
        harness fills and frees it before the rounds)."""

    def settle(self) -> None:
        """Finish what the storage does in the background for earlier scenarios (writes
        to disk, deletions), before the next one is measured."""

    def keep_logs(self, into: Path) -> None:
        """Copy the storage's own logs into ``into`` (a failed run's)."""


# The run's OSD block file. On tmpfs it keeps in memory every extent BlueStore wrote,
# and BlueStore spreads writes over the whole file: with the fixture's 20 GiB, four
# rounds of the scenarios filled it and the kernel killed the OSD for memory (24 GiB
# machine). A round's live data is under 6 GiB; with 12 GiB BlueStore reuses what the
# deletions freed.
BLOCK_SIZE = 12 << 30


class S3Storage:
    name = "s3"

    def __init__(self, rgw: RgwServer, run: str | None = None) -> None:
        self.rgw = rgw
        self.run = run or f"bench-{uuid.uuid4().hex[:8]}"
        self._client = rgw.client()

    def prefix(self, server: str) -> str:
        return f"{self.run}/{server}"

    def distribution(self, server: str) -> dict[str, Any]:
        rgw = self.rgw
        return {
            "s3": {
                "accesskey": rgw.access_key,
                "secretkey": rgw.secret_key,
                "region": rgw.region,
                "regionendpoint": rgw.endpoint_url,  # and with it, path-style addressing
                "bucket": rgw.bucket,
                "rootdirectory": "/" + self.prefix(server),
                "secure": False,
                "v4auth": True,
            },
            # As distribution's sample configuration (config-example.yml) has it.
            "cache": {"blobdescriptor": "inmemory"},
            "delete": {"enabled": True},
            "redirect": {"disable": True},
        }

    def registry(self, server: str) -> dict[str, str]:
        rgw = self.rgw
        return {
            "REGISTRY_STORAGE_DRIVER": "s3",
            "REGISTRY_STORAGE_S3_BUCKET": rgw.bucket,
            "REGISTRY_STORAGE_S3_ENDPOINT_URL": rgw.endpoint_url,
            "REGISTRY_STORAGE_S3_REGION": rgw.region,
            "REGISTRY_STORAGE_S3_PATH_STYLE": "true",
            "REGISTRY_STORAGE_S3_PREFIX": self.prefix(server),
            "REGISTRY_STORAGE_S3_ACCESS_KEY_ID": rgw.access_key,
            "REGISTRY_STORAGE_S3_SECRET_ACCESS_KEY": rgw.secret_key,
        }

    def clear(self, server: str) -> None:
        """Every object and unfinished multipart upload below the server's prefix."""
        client, bucket, prefix = self._client, self.rgw.bucket, self.prefix(server) + "/"
        for page in client.get_paginator("list_multipart_uploads").paginate(
            Bucket=bucket, Prefix=prefix
        ):
            for up in page.get("Uploads", []):
                client.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})

    def holds(self, data: int) -> int:
        return BLOCK_SIZE

    def settle(self) -> None:
        """The data of deleted objects (the uploads a push replaced, a cleared run) is
        removed now rather than by RGW's collector in its next period, in the middle of
        whichever server's scenario runs then; and the cluster is let go quiet (its OSD
        compacts after many deletes)."""
        self.rgw.collect_garbage()
        self.rgw.wait_quiet()

    def keep_logs(self, into: Path) -> None:
        if self.rgw.conf is not None:
            shutil.copytree(self.rgw.conf.parent / "log", into / "rgw", dirs_exist_ok=True)


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage",
        choices=["filesystem", "s3"],
        default="filesystem",
        help="where both servers keep their data: a folder each (default), or one "
        "Ceph RGW started for the run (needs ceph-mon ceph-osd radosgw ceph-common)",
    )


@contextlib.contextmanager
def chosen(args: argparse.Namespace, filesystem: Storage) -> Iterator[Storage]:
    """The storage ``--storage`` names: ``filesystem`` as given, or an RGW started for
    the run (and stopped after it)."""
    if args.storage != "s3":
        yield filesystem
        return
    if missing := missing_binaries():
        raise SystemExit(f"--storage s3 needs Ceph RGW: missing {', '.join(missing)}")
    # distribution's AWS SDK refuses to start when AWS_CA_BUNDLE is set (its HTTP
    # transport is not the SDK's); the RGW of the run speaks plain HTTP anyway.
    bundle = os.environ.pop("AWS_CA_BUNDLE", None)
    try:
        with running_rgw(BLOCK_SIZE) as rgw:
            yield S3Storage(rgw)
    finally:
        if bundle is not None:
            os.environ["AWS_CA_BUNDLE"] = bundle


def registry_on(
    rgw: RgwServer, workdir: Path, workers: int, source: str | None
) -> RegistryServer:
    """A `registry serve` (not started yet) on a key prefix of its own in ``rgw``'s
    bucket, the collector off, from ``source`` (a checkout's folder, first on
    PYTHONPATH) when given: the server of s3_memory.py and s3_start_memory.py."""
    s3 = rgw.s3_config(prefix=f"bench-{uuid.uuid4().hex[:8]}")
    config = {
        "storage": {"driver": "s3", "s3": s3.model_dump(exclude_none=True)},
        "log": {"level": "warning", "access_log": False},
        "gc": {"enabled": False},
    }
    env = {"PYTHONPATH": source} if source else {}
    return RegistryServer(workdir, config, env=env, workers=workers)
