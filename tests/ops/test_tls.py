"""TLS served by uvicorn itself, with a self-signed certificate the test makes, and skopeo
trusting it through --dest-cert-dir / --src-cert-dir."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import require_tool, start_server
from tests.images import image, write_oci_layout


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost; it is its own CA. Returns (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registry test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "registry.crt", directory / "registry.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_tls_push_and_pull_with_skopeo_trusting_a_self_signed_cert(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    skopeo = require_tool("skopeo")
    cert, key = self_signed(tmp_path / "pki")
    certs_dir = tmp_path / "certs.d"
    certs_dir.mkdir()
    (certs_dir / "ca.crt").write_bytes(cert.read_bytes())  # *.crt: a CA to trust
    server = start_server(
        request,
        tmp_path / "server",
        config={"http": {"tls_cert": str(cert), "tls_key": str(key)}},
        scheme="https",
    )

    # Verified TLS from Python, and no plain HTTP on that port.
    r = httpx.get(f"{server.url}/v2/", verify=ssl.create_default_context(cafile=str(cert)))
    assert r.status_code == 200
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{server.host}/v2/", timeout=5)

    # The container's HEALTHCHECK command finds the TLS port from the same configuration.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    health = subprocess.run(
        [sys.executable, "-m", "registry", "healthcheck", "--config", str(server.config_file)],
        env={**env, "REGISTRY_HTTP_PORT": str(server.port)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert health.returncode == 0, health.stderr
    assert '"status":"ok"' in health.stdout

    img = image(layers=2, layer_size=100_000)
    write_oci_layout(tmp_path / "src", img, "v1")
    dest = f"docker://{server.host}/tls/app:v1"
    untrusted = subprocess.run(
        [skopeo, "copy", f"oci:{tmp_path / 'src'}:v1", dest],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert untrusted.returncode != 0
    assert "certificate" in untrusted.stderr

    subprocess.run(
        [skopeo, "copy", "--dest-cert-dir", str(certs_dir), f"oci:{tmp_path / 'src'}:v1", dest],
        check=True,
        capture_output=True,
        timeout=120,
    )
    subprocess.run(
        [skopeo, "copy", "--src-cert-dir", str(certs_dir), dest, f"oci:{tmp_path / 'back'}:v1"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    for digest, data in img.blobs.items():
        assert (tmp_path / "back/blobs/sha256" / digest.split(":")[1]).read_bytes() == data
    raw = subprocess.run(
        [skopeo, "inspect", "--raw", "--cert-dir", str(certs_dir), dest],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    assert raw == img.manifest
