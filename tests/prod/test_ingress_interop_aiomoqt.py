"""Interop: the aiomoqt 0.5.3 client (on qh3) against the edge over raw QUIC (ALPN moq-00).

Control plane: CLIENT_SETUP (version 0xff00000e, PATH / AUTHORITY / MAX_REQUEST_ID, plus our
token in AUTHORIZATION_TOKEN) -> SERVER_SETUP; PUBLISH_NAMESPACE -> OK; the edge's SUBSCRIBE
to caller-audio answered by aiomoqt's handler; aiomoqt's SUBSCRIBEs to agent-audio and control
answered with SUBSCRIBE_OK. Data plane: aiomoqt's own data-stream reader assumes WebTransport
framing, so the test takes the edge's raw unidirectional streams off the connection and decodes
them with aiomoqt's message classes; and it publishes one caller-audio object built with
aiomoqt's classes, which the edge's call must receive.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from clutchcall.prod.quic.core import qh3_aiomoqt_shim

qh3_aiomoqt_shim()  # aiomoqt 0.5.3 imports a qh3 1.x module that qh3 2.x no longer has
aiomoqt = pytest.importorskip("aiomoqt")
from aiomoqt.client import MOQTClient
from aiomoqt.messages import ObjectHeader, SubgroupHeader, SubscribeOk
from aiomoqt.types import MOQTMessageType, SetupParamType
from aiomoqt.utils.buffer import Buffer
from qh3.quic.events import StreamDataReceived

from clutchcall.prod.ingress.config import IngressConfig
from clutchcall.prod.ingress.quic import QuicIngress

pytestmark = pytest.mark.timeout(60)


class Recorder:
    """Edge-side handler: records uplink, sends one agent-audio frame and one control event."""

    def __init__(self) -> None:
        self.uplink: list[bytes] = []
        self.got_frame = asyncio.Event()

    async def on_call(self, call) -> None:  # type: ignore[no-untyped-def]
        await call.send_agent_audio(b"\x01\x02" * 320)
        await call.send_control({"type": "commit", "turn": 1})
        async for f in call.frames():
            if not f.concealed:
                self.uplink.append(f.payload)
                self.got_frame.set()


def test_aiomoqt_client_interop(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        rec = Recorder()
        # audio on subgroup streams: the test decodes the edge's raw streams with aiomoqt's
        # classes (qh3 offers DATAGRAMs, so "auto" would send the agent frame as a datagram)
        edge = QuicIngress(IngressConfig(cert_dir=str(tmp_path / "tls"), jitter_depth_ms=0,
                                         audio_transport="stream"), rec)
        port = await edge.start()
        call_id = "interop-1"
        token = edge.authority.issue(call_id, time.time() + 60)
        edge_subscribes: list = []  # type: ignore[type-arg]

        async def on_subscribe(session, msg) -> None:  # type: ignore[no-untyped-def]
            edge_subscribes.append(session.subscribe_ok(request_msg=msg))

        client = MOQTClient("localhost", port, endpoint="clutchcall", use_quic=True, verify_tls=False)
        client.register_handler(MOQTMessageType.SUBSCRIBE, on_subscribe)
        async with client.connect() as session:
            raw_streams: dict[int, bytes] = {}
            original = session.quic_event_received

            def tap(event):  # type: ignore[no-untyped-def]
                if isinstance(event, StreamDataReceived) and event.stream_id % 4 == 3:
                    raw_streams[event.stream_id] = raw_streams.get(event.stream_id, b"") + event.data
                    return None  # the edge's raw-QUIC data streams: decoded below, not by aiomoqt
                return original(event)

            session.quic_event_received = tap
            send_setup = session.client_setup

            def client_setup_with_token(versions=None, parameters=None):  # type: ignore[no-untyped-def]
                params = dict(parameters or {})
                params[SetupParamType.AUTH_TOKEN] = token.encode()
                return send_setup(versions=versions, parameters=params)

            session.client_setup = client_setup_with_token
            await session.client_session_init(timeout=5)

            ns = ("clutchcall", call_id)
            reply = await session.publish_namespace(ns, wait_response=True)
            assert type(reply).__name__ == "PublishNamespaceOk", reply
            ok_a = await session.subscribe(ns, "agent-audio", wait_response=True)
            ok_c = await session.subscribe(ns, "control", wait_response=True)
            assert isinstance(ok_a, SubscribeOk) and isinstance(ok_c, SubscribeOk), (ok_a, ok_c)
            for _ in range(100):
                if edge_subscribes and len(raw_streams) >= 2:
                    break
                await asyncio.sleep(0.02)
            assert len(edge_subscribes) == 1 and edge.stats["calls_started"] == 1

            # decode the edge's objects with aiomoqt's classes
            decoded: dict[int, list[bytes]] = {}
            for data in raw_streams.values():
                buf = Buffer(data=data)
                stype = buf.pull_uint_var()
                hdr = SubgroupHeader.deserialize(buf, stype)
                prev = None
                while buf.tell() < len(data):
                    obj = ObjectHeader.deserialize(buf, len(data), extensions_present=hdr.extensions_present,
                                                   prev_object_id=prev)
                    prev = obj.object_id
                    decoded.setdefault(hdr.track_alias, []).append(obj.payload)
            assert decoded[ok_a.track_alias] == [b"\x01\x02" * 320]
            assert json.loads(decoded[ok_c.track_alias][0]) == {"type": "commit", "turn": 1}

            # publish one caller-audio object built with aiomoqt's classes on a raw QUIC stream
            alias = edge_subscribes[0].track_alias
            hdr = SubgroupHeader(track_alias=alias, group_id=0, subgroup_id_mode=0, end_of_group=True)
            payload = b"\x10\x20" * 320
            sid = session._quic.get_next_available_stream_id(is_unidirectional=True)
            session._quic.send_stream_data(sid, bytes(hdr.serialize().data) + bytes(hdr.next_object(payload).data),
                                           end_stream=True)
            session.transmit()
            await asyncio.wait_for(rec.got_frame.wait(), 5)
            assert rec.uplink == [payload]
        await edge.stop()

    asyncio.run(asyncio.wait_for(main(), 50))
