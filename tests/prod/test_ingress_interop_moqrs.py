"""Interop (issue 19 item 7): moq-rs (PyPI ``moq-rs``, the Rust moq crates through moq-ffi)
places a full call on the edge over raw QUIC (``moqt://``, ALPN moq-00, draft-14).

What moq-rs does that the edge must meet: it carries the token in the setup PATH
(``/?jwt=TOKEN``), sends SUBSCRIBE_NAMESPACE (empty prefix) right after setup, announces its
broadcast ``clutchcall/<call id>`` (PUBLISH_NAMESPACE ``("clutchcall", call id)``) and serves
the edge's SUBSCRIBE to ``caller-audio``, and can only subscribe to a broadcast the peer
announced: the edge answers SUBSCRIBE_NAMESPACE_OK and announces the call's namespace, where
moq-rs subscribes to ``agent-audio`` and ``control``. The caller here speaks a question at 1x
(PCM16 16 kHz, one 20 ms frame per group, the edge's default codec) and must hear the agent's
reply (PCM16 frames) and get the ``commit`` control event; the edge must count one committed
turn. Plus the pure pieces: the token in PATH and the SUBSCRIBE_NAMESPACE codec and rules.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from clutchcall.prod.ingress.auth import token_from_path
from clutchcall.prod.moqt import wire as w
from clutchcall.prod.moqt.session import MoqtSession, NamespaceSubscribed, NamespaceUnsubscribed

pytestmark = pytest.mark.timeout(60)


# ----------------------------------------------------------------------------- pure pieces
def test_token_from_path() -> None:
    assert token_from_path(b"/?jwt=v1.abc.1.sig") == b"v1.abc.1.sig"
    assert token_from_path("/clutchcall?x=1&token=T") == b"T"
    assert token_from_path(b"/clutchcall") is None
    assert token_from_path(b"/?jwt=") is None
    assert token_from_path(b"\xff\xfe") is None
    assert token_from_path(None) is None


def test_subscribe_namespace_codec_round_trip() -> None:
    for msg in (w.SubscribeNamespace(request_id=0, prefix=()),
                w.SubscribeNamespace(request_id=4, prefix=(b"clutchcall",), params=w.params_from({2: 7})),
                w.SubscribeNamespaceOk(request_id=4),
                w.SubscribeNamespaceError(request_id=4, error_code=1, reason="no"),
                w.UnsubscribeNamespace(prefix=(b"clutchcall", b"c1"))):
        raw = msg.encode()
        (back,) = w.ControlStreamParser().feed(raw)
        assert back == msg
    # moq-rs's bytes for an empty-prefix SUBSCRIBE_NAMESPACE (request 0, no parameters)
    (msg,) = w.ControlStreamParser().feed(bytes.fromhex("110003000000"))
    assert msg == w.SubscribeNamespace(request_id=0, prefix=())
    with pytest.raises(w.MoqtError):  # 33 prefix fields
        w.ControlStreamParser().feed(bytes([0x11, 0x00, 35, 0x00, 33]) + b"\x00" * 33 + b"\x00")


def test_session_subscribe_namespace_rules() -> None:
    client, server = MoqtSession("client"), MoqtSession("server")
    server.receive_control(client.client_setup(params=w.params_from({w.SetupParam.MAX_REQUEST_ID: 8})))
    client.receive_control(server.server_setup())
    (ev,) = server.receive_control(w.SubscribeNamespace(request_id=0, prefix=()).encode())
    assert isinstance(ev, NamespaceSubscribed) and ev.message.prefix == ()
    (ev2,) = server.receive_control(w.UnsubscribeNamespace(prefix=()).encode())
    assert isinstance(ev2, NamespaceUnsubscribed)
    with pytest.raises(w.MoqtError):  # request IDs must increase with the client's parity
        server.receive_control(w.SubscribeNamespace(request_id=0, prefix=()).encode())
    with pytest.raises(w.MoqtError):  # a response to a SUBSCRIBE_NAMESPACE never sent
        client.receive_control(w.SubscribeNamespaceOk(request_id=1).encode())


# ----------------------------------------------------------------------------- a full call
def test_moq_rs_places_a_full_call(tmp_path) -> None:  # type: ignore[no-untyped-def]
    moq = pytest.importorskip("moq")
    from clutchcall.prod.caller.speech import synth
    from clutchcall.prod.edge import Edge, EdgeConfig, EmbeddedModelConfig

    cfg = EdgeConfig(cert_dir=str(tmp_path / "tls"), json_logs=False, metrics_port=-1,
                     trace_dir=str(tmp_path / "traces"),
                     model=EmbeddedModelConfig(time_to_first_audio_ms=100))
    pcm = bytes(6400) + synth("Hello, where is my parcel today?", 16000) + bytes(32000 * 3)

    async def main() -> tuple[dict[str, Any], Any, dict[str, int]]:
        got: dict[str, Any] = {"agent": [], "control": []}
        async with Edge(cfg) as edge:
            url = f"moqt://localhost:{edge.quic_port}/?jwt={edge.issue_token('mr1')}"
            # separate origins: the caller's broadcast and the edge's share the path
            pub, sub = moq.OriginProducer(), moq.OriginProducer()
            async with moq.Client(url, tls_verify=False, websocket_enabled=False, reconnect=False,
                                  publish=pub, subscribe=sub) as client:
                mine = client.create_broadcast("clutchcall/mr1")
                caller_audio = mine.publish_track("caller-audio")
                mine.announce()
                edge_bc = await asyncio.wait_for(
                    client.announced_broadcast("clutchcall/mr1").available(), 10)
                agent = await edge_bc.subscribe_track("agent-audio")
                control = await edge_bc.subscribe_track("control")

                async def read(track: Any, key: str) -> None:
                    async for group in track.groups_as_arrived():
                        async for frame in group:
                            got[key].append(bytes(frame.payload))

                readers = [asyncio.ensure_future(read(agent, "agent")),
                           asyncio.ensure_future(read(control, "control"))]
                t0 = time.monotonic()
                for i in range(len(pcm) // 640):  # 1x, one frame per group
                    await asyncio.sleep(max(0.0, t0 + i * 0.02 - time.monotonic()))
                    group = caller_audio.append_group()
                    group.write_frame(pcm[i * 640:(i + 1) * 640])
                    group.finish()
                await asyncio.sleep(0.5)
                caller_audio.finish()
                for r in readers:
                    r.cancel()
            assert edge.handler is not None
            summary = await edge.handler.wait_ended("mr1", 10)
            stats = dict(edge.quic.stats)
        return got, summary, stats

    got, summary, stats = asyncio.run(asyncio.wait_for(main(), 50))
    print(len(got["agent"]), "agent frames;", got["control"][:3], stats)
    assert stats.get("calls_started") == 1, stats
    assert not any(k.startswith(("refused_", "closed_")) for k in stats), stats
    assert len(summary.turns) >= 1, summary  # caller audio in: the question was committed
    assert summary.frames >= len(pcm) // 640 - 5
    assert len(got["agent"]) >= 50 and all(len(f) == 640 for f in got["agent"])  # agent audio out
    events = [json.loads(c) for c in got["control"]]
    assert {"type": "commit", "turn": 1} in events, events
