"""TLS material for the edge: a self-signed certificate for loopback use, real ones from config.

Theory of operation
-------------------
:func:`ensure_self_signed` creates (once, then reuses) an ECDSA P-256 key and a certificate
for ``localhost`` / 127.0.0.1 / ::1 in a directory, and returns the two paths. The certificate
is signed by a one-use development CA whose certificate follows it in ``cert.pem`` (leaf, CA):
the server sends both, and a caller that uses ``cert.pem`` as its CA file trusts the CA. (A
single self-signed CA certificate, the earlier layout, is refused by qh3 as a server
certificate; it is replaced on first use.)
Both ingresses load the same files: aioquic via ``QuicConfiguration.load_cert_chain`` and the
WebSocket ingress via an ``ssl.SSLContext``. Callers on loopback trust that certificate by
using it as their CA file. For a real deployment, pass real certificate/key paths in config.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path
from typing import Any


def ensure_self_signed(directory: str | os.PathLike[str], hostname: str = "localhost") -> tuple[Path, Path]:
    """Return (cert.pem, key.pem) in ``directory``, generating them on first use."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = d / "cert.pem", d / "key.pem"
    if cert_path.exists() and key_path.exists() and _is_dev_chain(cert_path):
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    ca_key, ca_cert = _dev_ca(now)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(hostname),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    tmp_key = key_path.with_suffix(".tmp")
    tmp_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    os.chmod(tmp_key, 0o600)
    tmp_key.replace(key_path)
    tmp_cert = cert_path.with_suffix(".tmp")
    tmp_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                         + ca_cert.public_bytes(serialization.Encoding.PEM))
    tmp_cert.replace(cert_path)
    return cert_path, key_path


def _dev_ca(now: datetime.datetime) -> tuple[Any, Any]:
    """Return (key, certificate) of a fresh one-use development CA (ECDSA P-256). Its key is
    dropped after signing the leaf: the CA only makes the leaf verifiable by both QUIC cores
    (qh3's verifier, like browsers', refuses a CA certificate used as the server's own)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ClutchCall development CA")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _is_dev_chain(cert_path: Path) -> bool:
    """True if ``cert_path`` holds leaf + CA (this module's current layout), not the older
    single self-signed CA certificate (which qh3 refuses as a server certificate)."""
    return cert_path.read_bytes().count(b"-----BEGIN CERTIFICATE-----") >= 2


def server_ssl_context(cert: str | os.PathLike[str], key: str | os.PathLike[str]) -> ssl.SSLContext:
    """Return a TLS server context (TLS 1.2+) for the WebSocket ingress."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def client_ssl_context(cafile: str | os.PathLike[str] | None) -> ssl.SSLContext:
    """Return a verifying TLS client context trusting ``cafile`` (system roots if None)."""
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    return ctx
