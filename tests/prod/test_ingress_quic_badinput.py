"""Bad input on the QUIC/MoQT ingress: each bad session is closed with its MoQT termination
code; a call in progress is untouched, also under a burst of 1,000 bad-token sessions."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from clutchcall.prod.caller.client import Caller
from clutchcall.prod.caller.quic_transport import QuicCallerTransport
from clutchcall.prod.caller.rawmoqt import probe, setup_with_token
from clutchcall.prod.caller.speech import dialogue
from clutchcall.prod.ingress.call import EchoHandler
from clutchcall.prod.ingress.config import IngressConfig
from clutchcall.prod.ingress.quic import QuicIngress
from clutchcall.prod.moqt import wire as w
from clutchcall.prod.moqt.session import MoqtSession
from clutchcall.prod.moqt.wire import TerminationCode as TC

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("each_quic_core")]


@pytest.fixture(scope="module")
def speech() -> bytes:
    return dialogue(["hello there, this is a longer sentence", "and here is another one for the test"],
                    rate=16000, gap_s=0.6)


async def good_call(edge: QuicIngress, call_id: str, pcm: bytes, tail_s: float = 0.3):  # type: ignore[no-untyped-def]
    token = edge.authority.issue(call_id, time.time() + 120)
    tr = QuicCallerTransport("127.0.0.1", edge.port, token=token, call_id=call_id, codec="pcm16", rate=16000,
                             cafile=edge.cert_path)
    caller = Caller(tr, call_id=call_id, codec="pcm16", rate=16000, tail_s=tail_s, keep_payloads=True)
    return await caller.run(pcm)


def assert_clean(res, pcm: bytes) -> None:  # type: ignore[no-untyped-def]
    n = len(pcm) // 640
    frames = [pcm[i * 640 : (i + 1) * 640] for i in range(n)]
    got = res.received_payloads
    missing = [i for i, f in enumerate(frames) if i >= len(got) or got[i] != f]
    assert res.frames_sent == n and res.agent_frames_received == n, (res.agent_frames_received, missing[:10])
    assert got == frames


def test_bad_sessions_closed_with_right_codes_call_untouched(tmp_path, speech) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        edge = QuicIngress(IngressConfig(cert_dir=str(tmp_path / "tls"), max_object_bytes=4096, setup_timeout_s=1.0), EchoHandler())
        await edge.start()
        call = asyncio.ensure_future(good_call(edge, "good", speech))
        await asyncio.sleep(0.3)
        a = edge.authority
        good_setup = setup_with_token(a.issue("bad", time.time() + 60).encode())
        ns = w.PublishNamespace(request_id=0, namespace=(b"clutchcall", b"bad")).encode()
        cases = [
            (b"\x20\x00\x01\x01", TC.PROTOCOL_VIOLATION, "truncated"),
            (b"\x20\x00\x05\x01", TC.CONTROL_MESSAGE_TIMEOUT, "not completed in time"),
            (bytes([0x2F, 0, 0]), TC.PROTOCOL_VIOLATION, "unknown control message"),
            (w.Subscribe(request_id=0, namespace=(b"a",), track_name=b"b").encode(), TC.PROTOCOL_VIOLATION,
             "before setup"),
            (w.ClientSetup(versions=(0xFF00000B,)).encode(), TC.VERSION_NEGOTIATION_FAILED, "version"),
            (setup_with_token(None), TC.UNAUTHORIZED, "missing"),
            (setup_with_token(a.issue("bad", time.time() - 5).encode()), TC.EXPIRED_AUTH_TOKEN, "expired"),
            (setup_with_token(b"not-a-token"), TC.MALFORMED_AUTH_TOKEN, "malformed"),
            (setup_with_token(b"v1.YmFk.9999999999.AAAA"), TC.UNAUTHORIZED, "forged"),
            (good_setup + good_setup, TC.PROTOCOL_VIOLATION, "second setup"),
            (good_setup + w.PublishNamespace(request_id=1, namespace=(b"x",)).encode(), TC.INVALID_REQUEST_ID, ""),
        ]
        for control, want, words in cases:
            code, reason = await probe("127.0.0.1", edge.port, control)
            assert code == want, (control, code, reason)
            assert words in reason
        # oversized object on a data stream after a valid setup + namespace
        big = MoqtSession.encode_object_stream(0, 0, b"x" * 5000)
        code, reason = await probe("127.0.0.1", edge.port, good_setup + ns, data_stream=big)
        assert code == TC.PROTOCOL_VIOLATION and "exceeds" in reason, reason
        # data stream that is not a subgroup stream (FETCH type 0x05)
        code, reason = await probe("127.0.0.1", edge.port, good_setup + ns, data_stream=b"\x05\x00")
        assert code == TC.PROTOCOL_VIOLATION
        res = await call
        assert_clean(res, speech)
        assert edge.stats["refused_missing"] == 1 and edge.stats["refused_expired"] == 1
        assert edge.stats["calls_started"] == 1
        await edge.stop()

    asyncio.run(asyncio.wait_for(main(), 80))


def test_burst_of_1000_bad_tokens_does_not_disturb_a_call(tmp_path, speech) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        edge = QuicIngress(IngressConfig(cert_dir=str(tmp_path / "tls")), EchoHandler())
        port = await edge.start()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "clutchcall.prod.caller.rawmoqt", "127.0.0.1", str(port), "1000", "bad_token",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        garbage = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "clutchcall.prod.caller.rawmoqt", "127.0.0.1", str(port), "1000", "garbage",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            for _ in range(200):
                if edge.stats["refused_forged"] >= 20:
                    break
                await asyncio.sleep(0.05)
            before = edge.stats["refused_forged"]
            res = await good_call(edge, "steady", speech, tail_s=1.5)
            during = edge.stats["refused_forged"] - before
            _, err = await asyncio.wait_for(proc.communicate(), 60)
            await asyncio.wait_for(garbage.communicate(), 30)
        finally:
            for p in (proc, garbage):
                if p.returncode is None:
                    p.kill()
                    await p.wait()
        assert proc.returncode == 0, err
        assert_clean(res, speech)
        assert during > 50, during  # the burst really overlapped the call
        assert edge.stats["refused_forged"] == 1000
        assert edge.stats["calls_started"] == 1 and edge.stats["calls_ended"] == 1
        lat = [t.latency_ms for t in res.turns]
        print("mouth-to-ear under a 1000-bad-token burst (ms):", lat, "refusals during call:", during)
        await edge.stop()

    asyncio.run(asyncio.wait_for(main(), 85))
