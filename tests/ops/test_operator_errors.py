"""Every operator mistake is one line that names the file or setting and the fix, with a
non-zero exit, never a traceback: `registry serve`, `registry gc`, `registry readonly`.
And maintenance commands run from the wrong folder refuse to create an empty store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ops.test_tls import self_signed

OTHER_UID = 65534  # nobody


def registry(
    *args: str, cwd: Path, env: dict[str, str] | None = None, other_user: bool = False
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "registry", *args]
    if other_user and os.geteuid() == 0:
        # Root writes everywhere: the folder is unwritable only for another user.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv is needed to drop root privileges")
        cmd = [setpriv, f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups", *cmd]
    base = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    return subprocess.run(
        cmd, cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True, timeout=60
    )


def one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder another user can enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="registry-test-"))
    path.chmod(0o755)
    yield path
    for p in path.rglob("*"):
        if p.is_dir():
            p.chmod(0o755)
    shutil.rmtree(path)


# ------------------------------------------------------------------------------- serve


def test_serve_with_an_unwritable_data_folder(shared_dir: Path) -> None:
    (shared_dir / "data").mkdir()
    (shared_dir / "data").chmod(0o555)
    line = one_line(registry("serve", "--port", "0", cwd=shared_dir, other_user=True), 2)
    assert line.startswith(
        "registry: invalid configuration: <no file>: error: storage.filesystem.rootdirectory: "
        f"the data folder {shared_dir}/data is not writable by uid "
    )
    assert line.endswith("give it to that user (chown) or choose another folder (--data-dir)")


def test_serve_with_a_data_folder_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    line = one_line(registry("serve", "--data-dir", "file/data", cwd=tmp_path), 2)
    assert line == (
        "registry: invalid configuration: REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: error: "
        f"storage.filesystem.rootdirectory: cannot create {tmp_path}/file/data: "
        f"{tmp_path}/file is not a folder (the data folder)"
    )


def test_serve_with_a_tls_cert_and_no_key(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path / "pki")
    line = one_line(registry("serve", "--tls-cert", str(cert), cwd=tmp_path), 2)
    assert line == (
        "registry: invalid configuration: <no file>: error: http.tls_key: missing: "
        "http.tls_cert is set, so give its private key too (--tls-key, REGISTRY_HTTP_TLS_KEY)"
    )


def test_serve_with_a_missing_cert_file(tmp_path: Path) -> None:
    _, key = self_signed(tmp_path / "pki")
    result = registry("serve", "--tls-cert", "missing.crt", "--tls-key", str(key), cwd=tmp_path)
    assert one_line(result, 2) == (
        "registry: invalid configuration: REGISTRY_HTTP_TLS_CERT: error: http.tls_cert: "
        f"{tmp_path}/missing.crt does not exist"
    )


def test_serve_with_key_and_cert_swapped(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path / "pki")
    config = tmp_path / "config.yml"
    config.write_text(f"http:\n  tls_cert: {key}\n  tls_key: {cert}\n")
    line = one_line(registry("serve", "--config", str(config), cwd=tmp_path), 2)
    assert line == (
        f"registry: invalid configuration: {config}:2:13: error: http.tls_cert: {key} holds "
        f"a private key and {cert} the certificate: swap http.tls_cert and http.tls_key "
        "(--tls-cert, --tls-key)"
    )


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("auth:\n  anonymous:\n    - repositories: ['**']\n      role: boss\n", "4:13"),
        ("storage:\n  driver: s3\n", "2:3"),
        ("auth:\n  mode: basic\n  htpasswd: ./htpasswd\n", "3:13"),
    ],
)
def test_serve_refuses_what_check_config_refuses_with_the_same_line(
    tmp_path: Path, text: str, where: str
) -> None:
    config = tmp_path / "config.yml"
    config.write_text(text)
    checked = registry("check-config", str(config), cwd=tmp_path)
    assert checked.returncode == 1
    problem = checked.stdout.splitlines()[0]
    assert problem.startswith(f"{config}:{where}: error: ")
    served = one_line(registry("serve", "--config", str(config), cwd=tmp_path), 2)
    assert served == f"registry: invalid configuration: {problem}"


# ---------------------------------------------------------------------- maintenance


def test_gc_with_an_unwritable_data_folder(shared_dir: Path) -> None:
    (shared_dir / "data").mkdir()
    (shared_dir / "data").chmod(0o555)
    result = registry("gc", cwd=shared_dir, other_user=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    uid = OTHER_UID if os.geteuid() == 0 else os.geteuid()
    assert result.stderr.splitlines() == [
        f"registry gc: storage: filesystem {shared_dir}/data",
        f"registry gc: the data folder {shared_dir}/data is not writable by uid {uid}",
    ]


@pytest.mark.parametrize(
    ("command", "name"),
    [
        (["gc"], "registry gc"),
        (["gc", "--dry-run"], "registry gc"),
        (["readonly", "on"], "registry readonly"),
        (["readonly", "status"], "registry readonly"),
    ],
)
def test_maintenance_in_the_wrong_folder_creates_nothing(
    tmp_path: Path, command: list[str], name: str
) -> None:
    result = registry(*command, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{name}: storage: filesystem {tmp_path}/data",
        f"{name}: the data folder {tmp_path}/data does not exist; give the server's --config "
        "(or --data-dir), or run this where `registry serve` runs",
    ]
    assert list(tmp_path.iterdir()) == []


def test_maintenance_names_the_storage_it_acts_on(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    result = registry("readonly", "on", "--data-dir", "data", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"registry readonly: storage: filesystem {tmp_path}/data"]
    assert (tmp_path / "data" / "maintenance" / "readonly").exists()
    result = registry("gc", "--dry-run", "--data-dir", "data", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == f"registry gc: storage: filesystem {tmp_path}/data"


def test_readonly_status_with_an_unreachable_s3_endpoint(tmp_path: Path) -> None:
    env = {
        "REGISTRY_STORAGE_DRIVER": "s3",
        "REGISTRY_STORAGE_S3_BUCKET": "registry",
        "REGISTRY_STORAGE_S3_ENDPOINT_URL": "http://127.0.0.1:9",  # discard: nothing listens
        "REGISTRY_STORAGE_S3_ACCESS_KEY_ID": "id",
        "REGISTRY_STORAGE_S3_SECRET_ACCESS_KEY": "secret",
    }
    result = registry("readonly", "status", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "registry readonly: storage: s3 bucket registry at http://127.0.0.1:9",
        "registry readonly: the storage does not answer: s3: Could not connect to the endpoint "
        'URL: "http://127.0.0.1:9/registry/maintenance/readonly" (check '
        "storage.s3.endpoint_url, the bucket and the credentials)",
    ]
