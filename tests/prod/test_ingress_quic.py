"""A real call over loopback QUIC/MoQT (aioquic both sides) with the echo handler."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from clutchcall.prod.caller.client import Caller
from clutchcall.prod.caller.quic_transport import QuicCallerTransport
from clutchcall.prod.caller.speech import dialogue
from clutchcall.prod.ingress.call import EchoHandler
from clutchcall.prod.ingress.config import IngressConfig
from clutchcall.prod.ingress.quic import QuicIngress

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("each_quic_core")]


@pytest.fixture(scope="module")
def speech16k() -> bytes:
    return dialogue(["hello there", "how are you today"], rate=16000, gap_s=0.7)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 45))


def test_quic_call_audio_both_ways(tmp_path, speech16k) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        cfg = IngressConfig(cert_dir=str(tmp_path / "tls"))
        handler = EchoHandler()
        edge = QuicIngress(cfg, handler)
        port = await edge.start()
        token = edge.authority.issue("call-1", time.time() + 60)
        tr = QuicCallerTransport("127.0.0.1", port, token=token, call_id="call-1", codec="pcm16", rate=16000,
                                 cafile=edge.cert_path)
        caller = Caller(tr, call_id="call-1", codec="pcm16", rate=16000, tail_s=0.4, keep_payloads=True)
        res = await caller.run(speech16k, out_wav=str(tmp_path / "out.wav"))
        await asyncio.sleep(0.1)
        await edge.stop()
        n = len(speech16k) // 640
        assert res.frames_sent == n
        # echo: every frame came back, byte-exact and in order
        assert res.agent_frames_received == n
        assert b"".join(res.received_payloads) == speech16k[: n * 640]
        assert len(res.turns) == 2 and all(t.latency_ms is not None for t in res.turns)
        assert all(t.latency_ms >= 0 for t in res.turns)  # measured, not bounded (benchmarks measure)
        assert edge.stats["calls_started"] == 1 and edge.stats["calls_ended"] == 1
        # the shared socket's deep buffer (capped by rmem_max where SO_RCVBUFFORCE is not allowed)
        rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())  # noqa: ASYNC240
        assert edge.stats["udp_rcvbuf_bytes"] >= min(4 << 20, 2 * rmem_max)
        assert (tmp_path / "out.wav").stat().st_size > 44

    run(main())


@pytest.mark.parametrize("codec,rate", [("opus", 48000), ("g711_alaw", 8000), ("pcm16", 16000)])
def test_quic_call_through_the_transcoder(tmp_path, codec, rate) -> None:  # type: ignore[no-untyped-def]
    """Caller codec -> Transcoder.uplink -> model PCM16 24 kHz -> Transcoder.downlink -> caller codec."""
    import numpy as np

    from clutchcall.engine.audio.metrics import best_lag, correlation
    from clutchcall.prod.ingress.call import TranscodingEchoHandler

    pcm = dialogue(["hello there"], rate=rate, gap_s=0.5)

    async def main():  # type: ignore[no-untyped-def]
        handler = TranscodingEchoHandler()
        edge = QuicIngress(IngressConfig(cert_dir=str(tmp_path / "tls")), handler)
        port = await edge.start()
        tr = QuicCallerTransport("127.0.0.1", port, token=edge.authority.issue("tc", time.time() + 60),
                                 call_id="tc", codec=codec, rate=rate, cafile=edge.cert_path)
        res = await Caller(tr, call_id="tc", codec=codec, rate=rate, tail_s=0.5, keep_payloads=True).run(pcm)
        await edge.stop()
        return res, handler

    res, handler = asyncio.run(asyncio.wait_for(main(), 40))
    n = len(pcm) // (rate // 50 * 2)
    # the two soxr resamplers (caller rate <-> 24 kHz) hold back up to ~150 ms that is never flushed
    assert res.frames_sent == n and res.agent_frames_received >= n - 10
    assert handler.model_bytes > 0.9 * n * 960  # 20 ms at 24 kHz per frame reached the "model"
    from clutchcall.prod.caller.audio import CallerCodec

    # the agent audio as it arrived, decoded in order (not the caller's ear, which plays one
    # frame per 20 ms tick: when the echo's round trip sits near a tick boundary, scheduling
    # jitter on a loaded box puts silence ticks into the middle of the echo there)
    dec = CallerCodec(codec, rate, 20)
    heard = b"".join(dec.decode(p) for p in res.received_payloads)
    a = np.frombuffer(pcm, dtype="<i2").astype(np.int16)
    b = np.frombuffer(heard, dtype="<i2").astype(np.int16)
    lag = best_lag(a, b, max_lag=rate // 2)
    m = min(len(a), len(b) - lag)
    assert correlation(a[:m].astype(float), b[lag : lag + m].astype(float)) > 0.8, lag
