"""Issue 19 item 9: over Twilio Media Streams the played-time on cancel (the truncation point
told to the model) comes from what Twilio confirmed as played through mark echoes, not from
what the edge sent; mark names are short strings.

The Twilio side is played by this test over a real WebSocket to a real Edge (embedded model):
it streams the caller's audio at 1x, plays the agent's audio at 1x after a 250 ms network and
jitter-buffer delay (as a phone leg does), echoes each mark when the audio before it has
played and every pending mark at once on ``clear`` (Twilio's documented behaviour), and parses
every message the edge sends with Pipecat's ``TwilioFrameSerializer`` (media must decode to
audio; ``clear`` must equal what Pipecat itself sends to Twilio)."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from clutchcall.prod.caller.speech import synth
from clutchcall.prod.edge import Edge, EdgeConfig, EmbeddedModelConfig
from clutchcall.prod.ingress.codecs import ulaw_encode

pipecat_twilio = pytest.importorskip("pipecat.serializers.twilio")

pytestmark = pytest.mark.timeout(90)

PLAYOUT_DELAY_S = 0.25
REPLY = ("Thanks for waiting. Your parcel left the depot this morning, it is on the van now, and the "
         "driver expects to reach your street between two and four this afternoon.")


class TwilioSide:
    """Twilio's half of a Media Stream (module docstring)."""

    def __init__(self, ws: Any, sid: str) -> None:
        from pipecat.frames.frames import InterruptionFrame, OutputAudioRawFrame

        self.ws, self.sid = ws, sid
        self.ser = pipecat_twilio.TwilioFrameSerializer(
            stream_sid=sid, params=pipecat_twilio.TwilioFrameSerializer.InputParams(auto_hang_up=False))
        self.Interruption, self.OutAudio = InterruptionFrame, OutputAudioRawFrame
        self.loop = asyncio.get_running_loop()
        self.play_end = 0.0
        self.playout: list[tuple[float, float]] = []  # (start, end) loop times of each agent frame
        self.pending: dict[str, asyncio.TimerHandle] = {}
        self.cleared_at: list[float] = []
        self.mark_names: list[str] = []
        self.seq = 0
        self.tasks: set[asyncio.Future[None]] = set()

    async def send(self, obj: dict[str, Any]) -> None:
        self.seq += 1
        await self.ws.send(json.dumps({"sequenceNumber": str(self.seq), **obj}))

    def echo(self, name: str) -> None:
        self.pending.pop(name, None)
        task = asyncio.ensure_future(self.send({"event": "mark", "streamSid": self.sid, "mark": {"name": name}}))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def receive(self) -> None:
        from pipecat.frames.frames import InputAudioRawFrame, StartFrame

        await self.ser.setup(StartFrame(audio_in_sample_rate=8000, audio_out_sample_rate=8000))
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                now = self.loop.time()
                ev = msg["event"]
                if ev == "media":
                    frame = await self.ser.deserialize(raw)  # Pipecat parses it as Twilio audio
                    assert isinstance(frame, InputAudioRawFrame) and frame.audio, msg
                    assert set(msg) == {"event", "streamSid", "media"} and set(msg["media"]) == {"payload"}
                    dur = len(base64.b64decode(msg["media"]["payload"])) / 8000
                    start = max(now + PLAYOUT_DELAY_S, self.play_end)
                    self.play_end = start + dur
                    self.playout.append((start, self.play_end))
                elif ev == "clear":
                    assert msg == json.loads(await self.ser.serialize(self.Interruption())), raw
                    self.cleared_at.append(now)
                    self.playout = [(s, min(e, now)) for s, e in self.playout if s < now]
                    self.play_end = 0.0
                    for name in list(self.pending):
                        self.pending.pop(name).cancel()
                        self.echo(name)
                elif ev == "mark":
                    name = msg["mark"]["name"]
                    assert set(msg) == {"event", "streamSid", "mark"}, msg
                    self.mark_names.append(name)
                    delay = max(0.0, self.play_end - now)
                    self.pending[name] = self.loop.call_later(delay, self.echo, name)
                else:
                    raise AssertionError(f"unexpected event from the edge: {msg}")
        except ConnectionClosed:
            pass

    def played_ms_before(self, t: float) -> float:
        return sum(max(0.0, min(e, t) - s) for s, e in self.playout) * 1000


def test_cancel_truncates_at_what_twilio_confirmed_played(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = EdgeConfig(cert_dir=str(tmp_path / "tls"), json_logs=False, metrics_port=-1,
                     model=EmbeddedModelConfig(time_to_first_audio_ms=100, replies=(REPLY,)))
    rate = 8000
    question = synth("Where is my parcel today?", rate)
    barge = synth("No wait, stop, I need to change the address please.", rate)
    pcm = bytes(2 * rate // 5) + question + bytes(2 * rate * 2) + barge + bytes(2 * rate * 2)
    ulaw = ulaw_encode(pcm)

    calls: list[Any] = []
    snapshot: list[tuple[int, float]] = []

    async def main() -> tuple[TwilioSide, list[tuple[str, int]], dict[str, int]]:
        async with Edge(cfg) as edge:
            token = edge.issue_token("tw1")
            ctx = ssl.create_default_context(cafile=edge.cert_path)
            async with connect(f"wss://localhost:{edge.ws_port}/media", ssl=ctx) as ws:
                tw = TwilioSide(ws, "MZtw1")
                reader = asyncio.ensure_future(tw.receive())
                await tw.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
                await tw.send({"event": "start", "streamSid": tw.sid, "start": {
                    "streamSid": tw.sid, "callSid": "CAtw1", "tracks": ["inbound"],
                    "customParameters": {"token": token},
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})
                t0 = tw.loop.time()
                for i in range(len(ulaw) // 160):
                    await asyncio.sleep(max(0.0, t0 + i * 0.02 - tw.loop.time()))
                    await tw.send({"event": "media", "streamSid": tw.sid, "media": {
                        "track": "inbound", "chunk": str(i + 1), "timestamp": str(i * 20),
                        "payload": base64.b64encode(ulaw[i * 160:(i + 1) * 160]).decode()}})
                    if not calls and "tw1" in edge.ws.calls:
                        calls.append(edge.ws.calls["tw1"])  # the WsCall: its played position
                if calls:  # the played position as the edge sees it, and the truth, now
                    snapshot.append((calls[0].played_ms, tw.played_ms_before(tw.loop.time())))
                await tw.send({"event": "stop", "streamSid": tw.sid, "stop": {"callSid": "CAtw1"}})
                await asyncio.wait_for(reader, 10)
            assert edge.model_server is not None
            truncations = list(edge.model_server.stats.truncations)
            stats = dict(edge.ws.stats)
        return tw, truncations, stats

    tw, truncations, stats = asyncio.run(asyncio.wait_for(main(), 80))
    assert len(tw.cleared_at) == 1, "the barge-in should clear the agent once"
    assert len(truncations) == 1, truncations
    _item, end_ms = truncations[0]
    played = tw.played_ms_before(tw.cleared_at[0])
    print(f"truncated at {end_ms} ms; Twilio played {played:.0f} ms")
    assert played > 500  # the reply was well under way
    # never more than Twilio confirmed, at most one mark interval (100 ms) + scheduling behind
    assert played - 150 <= end_ms <= played + 20, (end_ms, played)
    # marks: short names, none carrying JSON; Twilio's echoes were counted
    assert tw.mark_names and all(len(n) <= 16 and not n.startswith("{") for n in tw.mark_names), tw.mark_names
    assert stats["marks"] >= 5
    # the played position API (prod/ingress/ws.py docstring): what Twilio confirmed played,
    # cumulative, never the audio a clear dropped; a lower bound within one mark interval
    from clutchcall.prod.pipeline import CallSessionDownlink

    call = calls[0]
    confirmed, truth = snapshot[0]
    print(f"confirmed played {confirmed} ms, Twilio had played {truth:.0f} ms; sent {call.sent_ms} ms")
    assert truth > 2000  # both replies played (the second after the barge-in)
    # a lower bound: at most one mark interval (100 ms) behind now, plus, per clear, what
    # played after the latest echo before it (never confirmed), plus scheduling
    assert truth - 100 * (1 + len(tw.cleared_at)) - 50 <= confirmed <= truth + 20, (confirmed, truth)
    assert call.played_ms < call.sent_ms  # the cleared audio was sent, never played
    assert call.last_confirmed_at is not None
    assert CallSessionDownlink(call).confirmed_played_ms() == call.played_ms
