"""0-RTT for real with aioquic: a reconnecting caller resumes with a session ticket and sends its
setup as early data; the edge defers all of it until the handshake completes. Tickets are single-use."""

from __future__ import annotations

import asyncio
import time

import pytest

from clutchcall.prod.caller.client import Caller
from clutchcall.prod.caller.quic_transport import QuicCallerTransport
from clutchcall.prod.caller.speech import synth
from clutchcall.prod.ingress.call import EchoHandler
from clutchcall.prod.ingress.config import IngressConfig
from clutchcall.prod.ingress.quic import QuicIngress

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("each_quic_core")]


def test_zero_rtt_resumption(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pcm = bytes(3200) + synth("yes", 16000) + bytes(9600)

    async def main() -> None:
        edge = QuicIngress(IngressConfig(cert_dir=str(tmp_path / "tls")), EchoHandler())
        port = await edge.start()
        tickets: list = []  # type: ignore[type-arg]

        async def call(call_id: str, ticket=None):  # type: ignore[no-untyped-def]
            tr = QuicCallerTransport(
                "127.0.0.1", port, token=edge.authority.issue(call_id, time.time() + 60), call_id=call_id,
                codec="pcm16", rate=16000, cafile=edge.cert_path, session_ticket=ticket, ticket_sink=tickets.append,
            )
            res = await Caller(tr, call_id=call_id, codec="pcm16", rate=16000, tail_s=0.3).run(pcm)
            assert res.agent_frames_received == res.frames_sent == len(pcm) // 640
            return res

        first = await call("c-1")
        assert not first.session_resumed and tickets
        ticket = tickets[-1]
        assert ticket.max_early_data_size  # the edge offers 0-RTT
        deferred0 = edge.stats["zero_rtt_deferred_events"]
        second = await call("c-2", ticket)
        assert second.session_resumed and second.early_data_accepted
        assert edge.stats["resumed"] == 1 and edge.stats["zero_rtt_sessions"] == 1
        assert edge.stats["zero_rtt_deferred_events"] > deferred0  # setup flight arrived as 0-RTT ...
        assert edge.stats["acted_before_handshake"] == 0  # ... and was acted on only after the handshake
        # the same ticket again: the store is single-use, so no resumption (full handshake)
        third = await call("c-3", ticket)
        assert not third.session_resumed and edge.tickets.unknown >= 1
        await edge.stop()

    asyncio.run(asyncio.wait_for(main(), 50))
