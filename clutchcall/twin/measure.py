"""Turning raw caller times into turn latencies, and the simulator's view of the same calls.

Theory of operation: both sides of the twin are scored on one definition, the simulator's
(:mod:`clutchcall.sim.metrics`): per committed turn, *mouth-to-ear turn latency* = first agent
audio frame received at the caller - the send time of the turn's last speech frame, where
"speech" is the edge's own VAD decision (the production VAD framing run on exactly the audio
the edge decodes: PCM16 at the caller rate over QUIC, G.711 u-law at 8 kHz over WebSocket).

Measured side (:func:`caller_turns`): each ``commit`` control event the caller received at
time ``c`` closes the turn whose last speech frame k is the last VAD-speech frame sent no
later than ``c - end_of_turn_silence - rtt`` (the commit fires one end-of-turn silence after
that frame reached the edge, and the event needs the downlink's one-way delay back); the
reply is the first agent frame received after ``sent[k] + end_of_turn_silence + rtt/2``
(nothing of it can leave the edge before the commit). *Edge-added* is, as in the simulator,
that latency minus what ClutchCall cannot remove: the end-of-turn silence, the model's time to
first audio and the caller leg's base delay both ways.

Predicted side (:func:`sim_call`): the same audio becomes a :class:`~clutchcall.sim.calls.Call`
(edge VAD decisions, plus the caller's silent tail) with no scripted agent speech -- in the
twin the agent is the embedded model, whose replies the simulator's model draws.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import numpy as np

from clutchcall.engine.audio.vad import vad_decisions
from clutchcall.sim.calls import Call

FRAME_MS = 20


def edge_vad(pcm: bytes, rate: int, codec: str, aggressiveness: int = 2) -> list[bool]:
    """Return the edge's VAD decision per 20 ms frame of the audio a caller sends (PCM16 at
    ``rate``), after the caller codec's round trip (G.711 u-law or PCM16)."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.int16)
    if codec == "g711_ulaw":
        from clutchcall.engine.audio import ulaw_decode, ulaw_encode

        x = ulaw_decode(ulaw_encode(x)).astype(np.int16)
    elif codec != "pcm16":
        raise ValueError(f"twin: unsupported caller codec {codec!r}")
    return vad_decisions(x, rate, FRAME_MS, aggressiveness)


def sim_call(name: str, flags: list[bool], tail_s: float) -> Call:
    """Return the simulator's call for audio with edge VAD ``flags`` followed by the
    caller's ``tail_s`` of silence (the caller keeps sending frames while it listens)."""
    tail = round(tail_s * 1000 / FRAME_MS)
    return Call(name=name, frame_ms=FRAME_MS, speech=tuple(flags) + (False,) * tail,
                agent_speech=(), segments=())


def caller_turns(rec: dict[str, Any], flags: list[bool], *, eot_ms: float, rtt_ms: float,
                 ttfa_ms: float) -> list[dict[str, Any]]:
    """Return one row per commit the caller received: ``{"end_of_speech_s", "commit_s",
    "first_audio_s", "turn_latency_ms", "edge_added_ms"}`` (latencies NaN when no reply
    frame came). ``rec`` is a :func:`clutchcall.twin.caller.place_calls` record."""
    sent: list[float] = rec["sent"]
    agent: list[float] = sorted(rec["agent"])
    speech_sent = [sent[k] for k in range(min(len(sent), len(flags))) if flags[k]]
    eot, rtt = eot_ms / 1000.0, rtt_ms / 1000.0
    rows = []
    for t, ev in rec["controls"]:
        if ev.get("type") != "commit":
            continue
        i = bisect.bisect_right(speech_sent, t - eot - rtt) - 1
        if i < 0:
            continue
        end = speech_sent[i]
        j = bisect.bisect_right(agent, end + eot + rtt / 2)
        first = agent[j] if j < len(agent) else math.inf
        lat = (first - end) * 1000.0 if math.isfinite(first) else math.nan
        rows.append({"end_of_speech_s": end, "commit_s": t, "first_audio_s": first,
                     "turn_latency_ms": lat, "edge_added_ms": lat - eot_ms - ttfa_ms - rtt_ms})
    return rows


def percentiles(values: list[float], qs: tuple[int, ...] = (50, 95, 99)) -> dict[str, float | None]:
    """Return ``{"p50": .., ...}`` of the finite ``values`` (numpy's linear interpolation, as
    the simulator's summary); None where there are none."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    return {f"p{q}": (round(float(np.percentile(v, q)), 2) if v.size else None) for q in qs}


def rel_errors(measured: dict[str, float | None], predicted: dict[str, float | None]
               ) -> dict[str, float | None]:
    """Return ``|predicted - measured| / measured`` per key (None where either is missing)."""
    out: dict[str, float | None] = {}
    for k, m in measured.items():
        p = predicted.get(k)
        out[k] = None if m is None or p is None or m == 0 else round(abs(p - m) / abs(m), 4)
    return out
