"""X.509 certificates made in memory: the project's one certificate maker.

Theory of operation: :func:`make_certificate` builds an ECDSA P-256 key and an X.509 certificate
with the ``cryptography`` package and returns both objects (aioquic and qh3 take them as they
are; :mod:`clutchcall.prod.ingress.tls` writes them as PEM). A certificate is self-signed, or
signed by an ``issuer`` (certificate, key) -- the edge's development chain is a short-lived leaf
signed by a one-use CA, because qh3's verifier, like browsers', refuses a CA certificate used as
the server's own. ``ca=True`` makes a CA (basic constraints, path length 0, cert-sign key
usage); otherwise a server leaf (``serverAuth``). Its users: the edge's development certificate
(:func:`clutchcall.prod.ingress.tls.ensure_self_signed`), the native QUIC echo service and
benchmarks, and the simulator's exact QUIC mode (fixed dates and serial). A leaf module: it
imports nothing of ours, so every part may use it.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from typing import Any


def make_certificate(common_name: str = "localhost", *, days: float = 1.0,
                     dns_names: Sequence[str] | None = None, ip_addresses: Sequence[str] = (),
                     ca: bool = False, issuer: tuple[Any, Any] | None = None,
                     not_before: datetime.datetime | None = None,
                     not_after: datetime.datetime | None = None,
                     serial: int | None = None) -> tuple[Any, Any]:
    """Return ``(certificate, private_key)``: a fresh ECDSA P-256 key and a certificate for
    ``common_name`` with DNS SANs ``dns_names`` (default: the common name; none for a CA) and IP
    SANs ``ip_addresses``, valid from ``not_before`` (default: 5 minutes ago) to ``not_after``
    (default: ``days`` after now), a CA if ``ca``, signed by ``issuer`` = (certificate, key) or
    self-signed, with a random serial unless one is given. Raises ValueError for a malformed IP
    address or an empty validity span."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    start = not_before or now - datetime.timedelta(minutes=5)
    end = not_after or now + datetime.timedelta(days=days)
    if end <= start:
        raise ValueError(f"certificate validity: not_after {end} is not after {start}")
    issuer_cert, issuer_key = issuer if issuer is not None else (None, key)
    builder = (
        x509.CertificateBuilder().subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert is not None else name)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
    )
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in
                                    (dns_names if dns_names is not None else
                                     (() if ca else (common_name,)))]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if ca:
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
        )
    elif issuer is not None:
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
        )
    return builder.sign(issuer_key, hashes.SHA256()), key
