"""TLS contexts for the listeners, and the self-signed certificate.

Without a configured certificate Roost makes a self-signed one on first
start (as dovecot's package and postfix's Debian package do with the
"snakeoil" pair), stores it under ``data_directory/tls`` and says so in the
log.  Clients will warn until the admin configures a real certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

log = logging.getLogger("roost.tls")

SELF_SIGNED_DAYS = 3650


def make_self_signed(cert_path: Path, key_path: Path, hostname: str) -> None:
    """Write a new RSA 2048 key and a self-signed certificate for hostname."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [
        x509.DNSName(hostname),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(key_path, key_bytes)
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def certificate_paths(
    cert_file: Path | None,
    key_file: Path | None,
    data_directory: Path,
    hostname: str,
) -> tuple[Path, Path]:
    """Return the (cert, key) to use, making a self-signed pair if needed."""
    if cert_file is not None and key_file is not None:
        return cert_file, key_file
    tls_dir = data_directory / "tls"
    cert_path = tls_dir / "roost-selfsigned.crt"
    key_path = tls_dir / "roost-selfsigned.key"
    if not (cert_path.exists() and key_path.exists()):
        make_self_signed(cert_path, key_path, hostname)
        log.warning(
            "tls: no tls_cert_file configured; made a self-signed certificate "
            "for %s in %s (clients will warn until a real one is set)",
            hostname,
            tls_dir,
        )
    return cert_path, key_path


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """A server context with modern defaults (TLS 1.2 or newer)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


def client_context(verify: bool) -> ssl.SSLContext:
    """A client context; unverified for opportunistic STARTTLS (RFC 7435)."""
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
