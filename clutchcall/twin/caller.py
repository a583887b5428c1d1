"""The callers of the twin check, run as one process in the emulator's caller namespace.

Theory of operation: :func:`place_calls` places every call it is given concurrently, each a
real :class:`~clutchcall.prod.caller.client.Caller` over QUIC/MoQT or WebSocket/TLS (the
production caller code), started ``stagger_s`` apart. It records, on the machine-wide
monotonic clock (the clock every namespace shares): when each caller frame was sent, when each
agent audio frame arrived and when each control event (``commit``, ``cancel``, ...) arrived.
The twin check turns those raw times into mouth-to-ear turn latency per committed turn
(:func:`clutchcall.twin.measure.caller_turns`), so the figure does not depend on the caller's
own turn segmentation.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from typing import Any

import numpy as np

FRAME_MS = 20


def prepare_audio(wav: str, transport: str) -> tuple[bytes, int, str]:
    """Return (PCM16 bytes at the caller rate, caller rate, codec) for a corpus WAV, the way
    ``clutchcall call`` prepares it: WebSocket is G.711 u-law at 8 kHz; QUIC sends PCM16 at
    the file's rate when it is 8/16/48 kHz, else at 16 kHz. Raises ValueError on a bad WAV."""
    import soxr

    from clutchcall.traces.labels import read_wav

    rate, samples = read_wav(wav, rates=None)
    pcm = samples.tobytes()
    codec = "g711_ulaw" if transport == "ws" else "pcm16"
    want = 8000 if codec.startswith("g711") else (rate if rate in (8000, 16000, 48000) else 16000)
    if rate != want:
        x = np.frombuffer(pcm, dtype="<i2")
        pcm = soxr.resample(x, rate, want).astype("<i2").tobytes()
    return pcm, want, codec


def _ws_transport(host: str, port: int, token: str, call_id: str, cafile: str) -> Any:
    from clutchcall.prod.caller.ws_transport import WsCallerTransport

    class _Ws(WsCallerTransport):
        """The production WebSocket caller, verifying the edge's certificate as
        ``localhost`` (the self-signed certificate's name) while dialling its address."""

        async def connect(self) -> None:
            from websockets.asyncio.client import connect

            ctx = ssl.create_default_context(cafile=self.cafile)
            self.ws = await connect(self.uri, ssl=ctx, server_hostname="localhost", max_size=1 << 20)
            await self.ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            await self.ws.send(json.dumps({
                "event": "start", "sequenceNumber": "1", "streamSid": self.stream_sid,
                "start": {
                    "streamSid": self.stream_sid, "accountSid": "AC0", "callSid": f"CA{self.call_id}",
                    "tracks": ["inbound"],
                    "customParameters": {"token": self.token, "call_id": self.call_id},
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            }))
            self._seq = 2
            self._start_ms = time.monotonic() * 1000
            self._reader = asyncio.ensure_future(self._read())

    return _Ws(f"wss://{host}:{port}/media", token=token, call_id=call_id, cafile=cafile)


async def _one_call(spec: dict[str, Any], delay: float, host: str, tail_s: float) -> dict[str, Any]:
    from clutchcall.prod.caller.client import Caller
    from clutchcall.prod.caller.quic_transport import QuicCallerTransport

    await asyncio.sleep(delay)
    loop = asyncio.get_running_loop()
    transport = spec["transport"]
    pcm, rate, codec = prepare_audio(spec["wav"], transport)
    if transport == "quic":
        tr: Any = QuicCallerTransport(host, spec["port"], token=spec["token"], call_id=spec["call_id"],
                                      codec=codec, rate=rate, cafile=spec["cafile"],
                                      server_name="localhost")
    else:
        tr = _ws_transport(host, spec["port"], spec["token"], spec["call_id"], spec["cafile"])
    sent: list[float] = []
    agent: list[float] = []
    controls: list[tuple[float, dict[str, Any]]] = []
    caller = Caller(tr, call_id=spec["call_id"], codec=codec, rate=rate, frame_ms=FRAME_MS,
                    tail_s=tail_s)
    send_frame = tr.send_frame

    async def timed_send(seq: int, payload: bytes) -> None:
        sent.append(loop.time())
        await send_frame(seq, payload)

    tr.send_frame = timed_send
    on_agent, on_control = caller._agent_audio, caller._control

    def agent_audio(payload: bytes) -> None:
        agent.append(loop.time())
        on_agent(payload)

    def control(event: dict[str, Any]) -> None:
        controls.append((loop.time(), event))
        on_control(event)

    # wrap the caller's two receive hooks to timestamp them (instance attributes shadow methods)
    caller._agent_audio = agent_audio  # type: ignore[method-assign]
    caller._control = control  # type: ignore[method-assign]
    error = None
    try:
        res = await caller.run(pcm)
        summary = res.summary()
    except (TimeoutError, OSError, ConnectionError, ssl.SSLError) as exc:
        error, summary = f"{type(exc).__name__}: {exc}", {}
    return {"call_id": spec["call_id"], "transport": transport, "wav": spec["wav"],
            "codec": codec, "rate": rate, "sent": sent, "agent": agent,
            "controls": [[t, json.loads(json.dumps(e))] for t, e in controls],
            "connect_ms": summary.get("connect_ms"), "error": error}


async def place_calls(*, calls: list[dict[str, Any]], host: str, stagger_s: float = 0.25,
                      tail_s: float = 2.0) -> list[dict[str, Any]]:
    """Place every call of ``calls`` (dicts: call_id, transport, wav, port, token, cafile)
    concurrently, ``stagger_s`` apart; return one record per call (see module docstring).
    A call that fails to connect comes back with ``error`` set; it never raises."""
    return list(await asyncio.gather(*(_one_call(c, i * stagger_s, host, tail_s)
                                       for i, c in enumerate(calls))))
