"""The WebTransport ingress without a browser: aioquic's HTTP/3 client against the real ingress.

A call over WebTransport reaches the handler as ``transport == "webtransport"`` with audio both
ways; the same bad inputs get the same MoQT termination codes over WebTransport (the session's
close code) as over raw QUIC (the QUIC application error); other HTTP/3 requests are refused
and never reach MoQT; the page server serves only its own files; the development certificate
is what browsers accept for ``serverCertificateHashes``.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aioquic.asyncio import connect
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration

from clutchcall.engine.errors import ConfigError
from clutchcall.prod.caller.client import Caller
from clutchcall.prod.caller.rawmoqt import probe, setup_with_token
from clutchcall.prod.caller.speech import dialogue
from clutchcall.prod.caller.webtransport_client import (
    WebTransportCallerProtocol,
    WebTransportCallerTransport,
)
from clutchcall.prod.ingress.call import EchoHandler
from clutchcall.prod.ingress.config import IngressConfig
from clutchcall.prod.ingress.quic import QuicIngress
from clutchcall.prod.ingress.tls import (
    DEV_CERT_DAYS,
    cert_sha256,
    ensure_self_signed,
    pinnable_cert_sha256,
    presented_cert_sha256,
)
from clutchcall.prod.ingress.webtransport import WebTransportIngress
from clutchcall.prod.moqt import wire as w
from clutchcall.prod.moqt.session import MoqtSession
from clutchcall.prod.moqt.wire import TerminationCode as TC
from clutchcall.prod.web.server import WebCaller

pytestmark = pytest.mark.timeout(90)


async def wt_probe(port: int, cafile: str, control: bytes, data_stream: bytes | None = None,
                   path: bytes = b"/moq") -> tuple[int | None, str, int | None]:
    """Open a WebTransport session, write ``control`` on its first bidirectional stream (and
    ``data_stream`` on a unidirectional one); return (close code, reason, CONNECT status)."""
    t = SimpleNamespace(ack_delay_ms=20.0, call_id="probe", on_closed=lambda r: None,
                        on_control=lambda e: None, on_agent_audio=lambda p: None)
    qc = QuicConfiguration(is_client=True, alpn_protocols=list(H3_ALPN), server_name="localhost",
                           max_datagram_frame_size=65536)
    qc.load_verify_locations(cafile)
    async with connect("127.0.0.1", port, configuration=qc,
                       create_protocol=lambda *a, **k: WebTransportCallerProtocol(*a, transport=t, **k)) as proto:
        proto.open_session(f"localhost:{port}", path)
        await asyncio.wait_for(proto.session_open.wait(), 5)
        if proto.session_status != 200:
            return None, "", proto.session_status
        sid = proto._new_stream(False)
        proto._control_sid = sid
        proto.moqt.receive_control = lambda data, fin=False: []  # a probe: read no replies
        proto._quic.send_stream_data(sid, control)
        if data_stream is not None:
            proto._quic.send_stream_data(proto._new_stream(True), data_stream, end_stream=True)
        proto.transmit()
        for _ in range(100):
            if proto.close_code is not None:
                break
            await asyncio.sleep(0.03)
        return proto.close_code, proto.close_reason, 200


def test_call_and_bad_input_codes_match_raw_quic(tmp_path: Path) -> None:
    async def main() -> None:
        cfg = IngressConfig(cert_dir=str(tmp_path / "tls"), max_object_bytes=4096, setup_timeout_s=1.0)
        handler = EchoHandler()
        quic = QuicIngress(cfg, handler)
        await quic.start()
        wt = WebTransportIngress(cfg, handler, authority=quic.authority)
        await wt.start()
        assert wt.cert_path is not None
        try:
            # a real call: frames echoed back byte for byte, the handler sees "webtransport"
            pcm = dialogue(["hello there, this is a call over web transport"], rate=16000, gap_s=0.3)
            tok = quic.authority.issue("wt-call", time.time() + 60)
            tr = WebTransportCallerTransport("127.0.0.1", wt.port, token=tok, call_id="wt-call", codec="pcm16",
                                             rate=16000, cafile=wt.cert_path)
            res = await Caller(tr, call_id="wt-call", codec="pcm16", rate=16000, tail_s=0.3,
                               keep_payloads=True).run(pcm)
            n = len(pcm) // 640
            assert res.frames_sent == n and res.agent_frames_received == n
            assert res.received_payloads == [pcm[i * 640:(i + 1) * 640] for i in range(n)]
            assert handler.calls[-1].transport == "webtransport" and wt.stats["calls_started"] == 1

            # the same bad input -> the same termination code on both transports
            a = quic.authority
            good = setup_with_token(a.issue("bad", time.time() + 60).encode())
            ns = w.PublishNamespace(request_id=0, namespace=(b"clutchcall", b"bad")).encode()
            cases: list[tuple[bytes, bytes | None, TC]] = [
                (b"\x20\x00\x01\x01", None, TC.PROTOCOL_VIOLATION),  # truncated CLIENT_SETUP
                (bytes([0x2F, 0, 0]), None, TC.PROTOCOL_VIOLATION),  # unknown message
                (w.Subscribe(request_id=0, namespace=(b"a",), track_name=b"b").encode(), None,
                 TC.PROTOCOL_VIOLATION),  # before setup
                (w.ClientSetup(versions=(0xFF00000B,)).encode(), None, TC.VERSION_NEGOTIATION_FAILED),
                (setup_with_token(None), None, TC.UNAUTHORIZED),
                (setup_with_token(b"v1.YmFk.9999999999.AAAA"), None, TC.UNAUTHORIZED),
                (setup_with_token(a.issue("bad", time.time() - 5).encode()), None, TC.EXPIRED_AUTH_TOKEN),
                (setup_with_token(b"not-a-token"), None, TC.MALFORMED_AUTH_TOKEN),
                (good + good, None, TC.PROTOCOL_VIOLATION),  # second setup
                (b"\x20\x00\x05\x01", None, TC.CONTROL_MESSAGE_TIMEOUT),  # setup never completes
                (good + ns, MoqtSession.encode_object_stream(0, 0, b"x" * 5000), TC.PROTOCOL_VIOLATION),
            ]
            for control, data, want in cases:
                raw_code, raw_reason = await probe("127.0.0.1", quic.port, control, data_stream=data)
                wt_code, wt_reason, status = await wt_probe(wt.port, wt.cert_path, control, data)
                assert status == 200
                assert raw_code == wt_code == want, (control, raw_code, wt_code, wt_reason)
                assert raw_reason.split(":")[0] == wt_reason.split(":")[0], (raw_reason, wt_reason)
            assert wt.stats["closed_PROTOCOL_VIOLATION"] >= 5 and wt.stats["refused_forged"] == 1

            # other HTTP/3 requests never reach MoQT
            assert (await wt_probe(wt.port, wt.cert_path, good, path=b"/other"))[2] == 404
            assert wt.stats["wt_refused_404"] == 1 and wt.stats["calls_started"] == 1
        finally:
            await wt.stop()
            await quic.stop()

    asyncio.run(asyncio.wait_for(main(), 80))


def test_page_server_serves_its_files_only(tmp_path: Path) -> None:
    cert, key = ensure_self_signed(tmp_path / "tls")

    async def main() -> None:
        ingresses: list[Any] = []

        def factory(sock: Any) -> Any:
            ing = WebTransportIngress(IngressConfig(cert=str(cert), key=str(key)), EchoHandler(), sock=sock)
            ingresses.append(ing)
            return ing

        web = WebCaller(host="127.0.0.1", port=0, cert=str(cert), key=str(key), cert_hash=cert_sha256(cert),
                        ingress_factory=factory, loopback_http=True)
        port = await web.start()
        assert ingresses[0].port == port  # TCP (page) and UDP (WebTransport) share the number
        ctx = ssl.create_default_context(cafile=str(cert))

        def get(path: str, method: str = "GET", scheme: str = "https", p: int = port) -> tuple[int, bytes]:
            req = urllib.request.Request(f"{scheme}://localhost:{p}{path}", method=method)
            try:
                with urllib.request.urlopen(req, context=ctx if scheme == "https" else None, timeout=5) as r:
                    return r.status, r.read()
            except urllib.error.HTTPError as e:
                return e.code, b""

        try:
            status, body = await asyncio.to_thread(get, "/")
            assert status == 200 and b'<script type="module" src="app.js">' in body
            for name in ("app.js", "moqt.js", "audio.js", "worklets.js", "style.css"):
                assert (await asyncio.to_thread(get, "/" + name))[0] == 200
            assert (await asyncio.to_thread(get, "/../server.py"))[0] == 404
            assert (await asyncio.to_thread(get, "/nope.js"))[0] == 404
            assert (await asyncio.to_thread(get, "/", "POST"))[0] == 405
            assert (await asyncio.to_thread(get, "/", "GET", "http", web.http_port))[0] == 200
            # the hash a browser caller pins is the leaf the page's port presents
            assert await asyncio.to_thread(presented_cert_sha256, "127.0.0.1", port, str(cert)) == cert_sha256(cert)
            url = web.page_url("c-1", "TOKEN")
            assert url.startswith(f"https://127.0.0.1:{port}/#call=c-1&token=TOKEN&port={port}&hash=")
        finally:
            await ingresses[0].stop()
            await web.stop()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_dev_certificate_is_short_lived_ecdsa_and_renewed(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    cert, _key = ensure_self_signed(tmp_path)
    c = x509.load_pem_x509_certificate(cert.read_bytes())
    assert c.not_valid_after_utc - c.not_valid_before_utc <= datetime.timedelta(days=DEV_CERT_DAYS)
    pub = c.public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.name == "secp256r1"
    assert len(cert_sha256(cert)) == 32
    assert ensure_self_signed(tmp_path)[0].read_bytes() == cert.read_bytes()  # fresh: reused
    # an old long-lived certificate (what earlier versions made) is replaced by a short one
    from cryptography.hazmat.primitives import hashes, serialization

    k = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    old = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
           .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=365))
           .sign(k, hashes.SHA256()))
    cert.write_bytes(old.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(ConfigError, match="valid 365 days"):
        pinnable_cert_sha256(cert)  # a browser would refuse to pin it: the edge says so
    renewed = x509.load_pem_x509_certificate(ensure_self_signed(tmp_path)[0].read_bytes())
    assert renewed.not_valid_after_utc - renewed.not_valid_before_utc <= datetime.timedelta(days=DEV_CERT_DAYS)


def test_pinned_hash_is_the_leaf_of_a_chain(tmp_path: Path) -> None:
    """A chain file (leaf, then the CA that signed it): the pinned hash is the leaf's, and a
    14-day leaf under a long-lived CA is pinnable (the CA is never hashed or checked)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    now = datetime.datetime.now(datetime.UTC)

    def make(subject: str, issuer: str, key: Any, signer: Any, days: int, ca: bool) -> x509.Certificate:
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, subject)]))
                .issuer_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, issuer)]))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=1))
                .not_valid_after(now + datetime.timedelta(days=days, minutes=-2))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .sign(signer, hashes.SHA256()))

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = make("one-use CA", "one-use CA", ca_key, ca_key, 3650, True)
    leaf = make("localhost", "one-use CA", leaf_key, ca_key, DEV_CERT_DAYS, False)
    pem = tmp_path / "chain.pem"
    pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM))
    import hashlib

    want = hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).digest()
    assert cert_sha256(pem) == pinnable_cert_sha256(pem) == want
    with pytest.raises(ConfigError, match="cannot be read"):
        pinnable_cert_sha256(tmp_path / "missing.pem")
