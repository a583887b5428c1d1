"""TLS material for the edge: a self-signed certificate for loopback use, real ones from config.

Theory of operation
-------------------
:func:`ensure_self_signed` creates (then reuses while it is fresh) an ECDSA P-256 key and a
certificate for ``localhost`` / 127.0.0.1 / ::1 in a directory, and returns the two paths. The
certificate is signed by a one-use development CA whose certificate follows it in ``cert.pem``
(leaf, CA): the server sends both, and a caller that uses ``cert.pem`` as its CA file trusts
the CA. (A single self-signed certificate used as both CA and server certificate is refused by
qh3, one of the two QUIC cores; such an older file is replaced on first use.) Every ingress
loads the same files: the QUIC core via ``QuicConfiguration.load_cert_chain`` (raw QUIC and
WebTransport) and the WebSocket ingress and the web page via an ``ssl.SSLContext``. Callers on
loopback trust that certificate by using it as their CA file.

The leaf is short-lived (:data:`DEV_CERT_DAYS`, 14 days, the most a browser accepts for
WebTransport ``serverCertificateHashes``) and is made anew when less than
:data:`RENEW_BEFORE` of its life remains or when an older, longer-lived one is found. A page
passes :func:`cert_sha256` of it (the leaf, first in the file) to
``new WebTransport(url, {serverCertificateHashes})``, so a browser accepts it without a CA. For
a real deployment, pass real certificate/key paths in config.
"""

from __future__ import annotations

import datetime
import os
import ssl
from pathlib import Path
from typing import Any

from clutchcall.native.tlscert import make_certificate

#: validity of the self-signed certificate: browsers accept at most 14 days for WebTransport
#: ``serverCertificateHashes`` (W3C WebTransport, "custom certificate requirements")
DEV_CERT_DAYS = 14
#: a self-signed certificate with less than this left is replaced by a new one
RENEW_BEFORE = datetime.timedelta(days=2)


def _fresh(cert_path: Path, now: datetime.datetime) -> bool:
    """True if the certificate at ``cert_path`` is valid now for long enough, and short-lived."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return False
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return start <= now and end - now > RENEW_BEFORE and end - start <= datetime.timedelta(days=DEV_CERT_DAYS)


def ensure_self_signed(directory: str | os.PathLike[str], hostname: str = "localhost") -> tuple[Path, Path]:
    """Return (cert.pem, key.pem) in ``directory``: reused while fresh (module docstring),
    else generated anew (ECDSA P-256, valid :data:`DEV_CERT_DAYS` days). Raises OSError if the
    directory cannot be written."""
    from cryptography.hazmat.primitives import serialization

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = d / "cert.pem", d / "key.pem"
    now = datetime.datetime.now(datetime.UTC)
    if (cert_path.exists() and key_path.exists() and _fresh(cert_path, now)
            and _is_dev_chain(cert_path)):
        return cert_path, key_path
    ca_cert, _ca_key = ca = _dev_ca(now)  # the CA's key is dropped once the leaf is signed
    # the span (not_before .. not_after) stays within DEV_CERT_DAYS
    cert, key = make_certificate(
        hostname, dns_names=(hostname,), ip_addresses=("127.0.0.1", "::1"), issuer=ca,
        not_before=now - datetime.timedelta(minutes=5),
        not_after=now + datetime.timedelta(days=DEV_CERT_DAYS, minutes=-10))
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
    """Return (certificate, key) of a fresh one-use development CA (ECDSA P-256). Its key is
    dropped after signing the leaf: the CA only makes the leaf verifiable by both QUIC cores
    (qh3's verifier, like browsers', refuses a CA certificate used as the server's own)."""
    return make_certificate("ClutchCall development CA", ca=True,
                            not_before=now - datetime.timedelta(minutes=5),
                            not_after=now + datetime.timedelta(days=DEV_CERT_DAYS))


def _is_dev_chain(cert_path: Path) -> bool:
    """True if ``cert_path`` holds leaf + CA (this module's current layout), not the older
    single self-signed CA certificate (which qh3 refuses as a server certificate)."""
    return cert_path.read_bytes().count(b"-----BEGIN CERTIFICATE-----") >= 2


# -- WebTransport certificate pinning (the browser caller) ---------------------------------
# What ``serverCertificateHashes`` needs is kept apart from how the development certificate is
# made: the hash is over the DER of the *leaf* the server presents (in a chain file the leaf
# comes first; a CA that signed it is never hashed), and Chromium accepts a pinned leaf only if
# its validity spans at most 14 days and its key is ECDSA (P-256 here).


def cert_sha256(cert: str | os.PathLike[str]) -> bytes:
    """Return the SHA-256 digest of the (first) certificate in the PEM file ``cert``, over
    its DER encoding: the value of a WebTransport ``serverCertificateHashes`` entry. Raises
    OSError / ValueError for a missing or malformed file."""
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    c = x509.load_pem_x509_certificate(Path(cert).read_bytes())
    return hashlib.sha256(c.public_bytes(serialization.Encoding.DER)).digest()


def pinnable_cert_sha256(cert: str | os.PathLike[str]) -> bytes:
    """Return :func:`cert_sha256` of the leaf in ``cert`` after checking that a browser will
    accept it through ``serverCertificateHashes`` (ECDSA key, validity span at most
    :data:`DEV_CERT_DAYS` days, valid now). Raises ConfigError naming what is wrong (an edge
    then refuses to start its browser caller instead of serving a page no browser can use)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    from clutchcall.engine.errors import ConfigError

    try:
        c = x509.load_pem_x509_certificate(Path(cert).read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"WebTransport certificate {cert}: cannot be read: {exc}") from exc
    span = c.not_valid_after_utc - c.not_valid_before_utc
    now = datetime.datetime.now(datetime.UTC)
    if span > datetime.timedelta(days=DEV_CERT_DAYS):
        raise ConfigError(f"WebTransport certificate {cert}: valid {span.days} days; a browser pins "
                          f"(serverCertificateHashes) only certificates valid <= {DEV_CERT_DAYS} days")
    if not isinstance(c.public_key(), ec.EllipticCurvePublicKey):
        raise ConfigError(f"WebTransport certificate {cert}: serverCertificateHashes needs an ECDSA key")
    if not c.not_valid_before_utc <= now < c.not_valid_after_utc:
        raise ConfigError(f"WebTransport certificate {cert}: not valid now ({c.not_valid_before_utc} .. "
                          f"{c.not_valid_after_utc})")
    return cert_sha256(cert)


def presented_cert_sha256(host: str, port: int, cafile: str | os.PathLike[str] | None,
                          timeout_s: float = 5.0) -> bytes:
    """Connect with TLS to ``host:port`` (the page's HTTPS port), verify the server with
    ``cafile`` (system roots if None) and return the SHA-256 of the leaf certificate it
    presented: the ``serverCertificateHashes`` value for that server whatever ``cafile`` is
    (the certificate itself, or a CA that signed it). Raises OSError / ssl.SSLError."""
    import hashlib
    import socket

    ctx = client_ssl_context(cafile)
    with socket.create_connection((host, port), timeout=timeout_s) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as tls:
        der = tls.getpeercert(binary_form=True)
    if der is None:
        raise ssl.SSLError(f"{host}:{port} presented no certificate")
    return hashlib.sha256(der).digest()


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
