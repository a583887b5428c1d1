"""``clutchcall demo``: the whole product on loopback in one process, one real call.

Theory of operation: starts an :class:`~clutchcall.prod.edge.Edge` (both ingresses, the
embedded reference model, ``/metrics``, a recorded trace per call in a temporary directory),
then places one real call with the caller library (:mod:`clutchcall.prod.caller.client`) over
QUIC/MoQT (PCM16 16 kHz) or WebSocket/TLS (Twilio Media Streams, G.711 u-law 8 kHz). The caller
plays labelled corpus calls from ``traces/corpus`` back to back at 1x (by default three clean
16 kHz calls: a short answer, backchannels, a question and an interruption), so the table shows
committed turns next to what the engine filtered. Per committed turn it prints the edge's turn
latency (last inbound speech frame -> first agent frame sent), the model's own time to first
audio, the edge-added latency (the part spent inside ClutchCall) and the caller's mouth-to-ear
latency (last speech frame sent -> first agent frame received). Edge and caller share the loop
clock, so a caller turn is matched to the edge turn whose last speech frame it sent, and the
caller's first agent frame to the first frame the edge sent for that turn. Finally the call's
recorded trace is replayed through a fresh engine (``clutchcall sim replay`` does the same) and
the demo says whether the replay reproduced every engine action exactly.

The edge runs the product's turn config (speculative commit on; ``--no-speculate`` turns it
off; ``--end-of-turn-silence-ms`` / ``--end-of-turn-rule`` change the end of turn, e.g. to
measure what a shorter silence or the opt-in smart-turn rule would show) and the embedded model's time to first audio is lognormal (``--ttfa-ms`` median,
``--ttfa-sigma`` shape, ``--seed``), as in the simulator. *Turn latency from end of speech*
(``turn_latency_from_speech_end_ms_*``) is measured at the caller from the caller's real end
of speech: the labelled end of the corpus segment the turn closed (the latest labelled ``reply``
segment end at most 1 s before the turn's last speech frame reached the edge) to the first
agent frame received; with ``--wav`` (no labels) from the turn's last speech frame sent.
The speculation counters come from the edge's ``/metrics``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from clutchcall.engine.config import END_OF_TURN_RULES

DEFAULT_CALLS = ("call0041_clean16", "call0011_clean16", "call0031_clean16")
GAP_S = 0.5


def corpus_dir() -> Path:
    """Return the checked-in corpus directory (``traces/corpus``)."""
    import clutchcall.traces

    return Path(clutchcall.traces.__file__).parent / "corpus"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--call", default=",".join(DEFAULT_CALLS),
                        help="corpus call name(s), comma-separated, played back to back "
                             f"(default {','.join(DEFAULT_CALLS)})")
    parser.add_argument("--wav", default=None, help="play this 16-bit mono WAV instead of corpus calls")
    parser.add_argument("--transport", choices=("quic", "ws"), default="quic")
    parser.add_argument("--ttfa-ms", type=int, default=300,
                        help="embedded model's median time to first audio (ms)")
    parser.add_argument("--ttfa-sigma", type=float, default=0.35,
                        help="lognormal shape of the model's time to first audio (0: always the median)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the model's time-to-first-audio draws")
    parser.add_argument("--no-speculate", action="store_true",
                        help="speculative commit off (the engine waits for the end of turn to ask the model)")
    parser.add_argument("--end-of-turn-silence-ms", type=int, default=None,
                        help="end-of-turn silence (default: the product's, 500 ms)")
    parser.add_argument("--end-of-turn-rule", choices=END_OF_TURN_RULES, default=None,
                        help="end-of-turn rule (default: the product's, prosodic); smart-turn needs "
                             "the [smartturn] extra")
    parser.add_argument("--end-of-turn-final-ms", type=int, default=None,
                        help="prosodic rule: end-of-turn silence after a final fall (default: the "
                             "product's, 500 ms = never shorten)")
    parser.add_argument("--end-of-turn-neutral-ms", type=int, default=None,
                        help="prosodic rule: end-of-turn silence when a long turn sounds neither "
                             "final nor continuing (default: the product's, 0 = the silence)")
    parser.add_argument("--end-of-turn-final-pct", type=int, default=None,
                        help="prosodic rule: P(end) in percent at which a final fall gets "
                             "--end-of-turn-final-ms (default: the product's, 90)")
    parser.add_argument("--trace-dir", default=None, help="keep the recorded trace here (default: a temp dir)")
    parser.add_argument("--tail", type=float, default=2.0, help="seconds to listen after the audio ends")


def reply_ends(calls: str | None, wav: str | None) -> list[float] | None:
    """Return the labelled ends (s, on the played audio's timeline) of the ``reply`` segments
    of the corpus calls as :func:`load_audio` plays them back to back, or None for ``wav``."""
    from clutchcall.traces.labels import read_call

    if wav:
        return None
    ends: list[float] = []
    offset = 0.0
    for c in (calls or "").split(","):
        if not c.strip():
            continue
        call = read_call(corpus_dir() / f"{c.strip()}.json")
        ends += [offset + s.end_ms / 1000.0 for s in call.labels.segments if s.expect == "reply"]
        offset += call.duration_ms / 1000.0 + GAP_S
    return ends


def load_audio(calls: str | None, wav: str | None, rate: int) -> tuple[bytes, list[str]]:
    """Return (16-bit mono PCM at ``rate``, names) of ``wav`` or of the named corpus calls
    played back to back with ``GAP_S`` of silence between. Raises ConfigError for a missing
    file or a bad format."""
    import soxr

    from clutchcall.engine.errors import ConfigError
    from clutchcall.traces.labels import read_wav

    paths = [Path(wav)] if wav else [corpus_dir() / f"{c.strip()}.wav" for c in (calls or "").split(",") if c.strip()]
    if not paths:
        raise ConfigError("demo: no call given")
    parts: list[np.ndarray] = []
    for p in paths:
        try:
            r, x = read_wav(p, rates=None)
        except (OSError, ValueError, EOFError) as exc:
            raise ConfigError(f"demo: cannot read {p}: {exc}") from None
        if r != rate:
            x = soxr.resample(x, r, rate).astype("<i2")
        parts += [x, np.zeros(int(GAP_S * rate), dtype="<i2")]
    return np.concatenate(parts).astype("<i2").tobytes(), [p.stem for p in paths]


def _pct(xs: list[float], q: float) -> float | None:
    return None if not xs else round(float(np.percentile(np.asarray(xs), q)), 2)


async def run_demo(*, calls: str | None = ",".join(DEFAULT_CALLS), wav: str | None = None,
                   transport: str = "quic", ttfa_ms: int = 300, trace_dir: str | None = None,
                   tail_s: float = 2.0, ttfa_sigma: float = 0.35, seed: int = 1,
                   speculate: bool = True, end_of_turn_silence_ms: int | None = None,
                   end_of_turn_rule: str | None = None,
                   end_of_turn_final_ms: int | None = None,
                   end_of_turn_neutral_ms: int | None = None,
                   end_of_turn_final_pct: int | None = None) -> dict[str, Any]:
    """Run the demo (module docstring); return its result dict (the ``--json`` object)."""
    from clutchcall.prod.caller.client import Caller
    from clutchcall.prod.caller.quic_transport import QuicCallerTransport
    from clutchcall.prod.caller.ws_transport import WsCallerTransport
    from clutchcall.prod.edge import Edge, EdgeConfig, EmbeddedModelConfig
    from clutchcall.traces.recorded import read_trace
    from clutchcall.traces.replay import first_mismatch

    codec, rate = ("pcm16", 16000) if transport == "quic" else ("g711_ulaw", 8000)
    pcm, names = load_audio(calls, wav, rate)
    labelled_ends = reply_ends(calls, wav)
    tmp = None if trace_dir else tempfile.TemporaryDirectory(prefix="clutchcall-demo-")
    tdir = trace_dir or tmp.name  # type: ignore[union-attr]  # tmp is None only if trace_dir
    cfg = EdgeConfig(trace_dir=str(Path(tdir) / "traces"), cert_dir=str(Path(tdir) / "tls"),
                     json_logs=False, model=EmbeddedModelConfig(time_to_first_audio_ms=ttfa_ms,
                                                                ttfa_sigma=ttfa_sigma, ttfa_seed=seed))
    if not speculate:
        cfg = cfg.with_overrides(turn_speculate=False)
    cfg = cfg.with_overrides(turn_end_of_turn_silence_ms=end_of_turn_silence_ms,
                             turn_end_of_turn_rule=end_of_turn_rule,
                             turn_end_of_turn_final_ms=end_of_turn_final_ms,
                             turn_end_of_turn_neutral_ms=end_of_turn_neutral_ms,
                             turn_end_of_turn_final_pct=end_of_turn_final_pct)
    loop = asyncio.get_running_loop()
    arrivals: list[float] = []

    first_sent: list[float] = []

    class _Caller(Caller):
        async def run(self, pcm: bytes, out_wav: str | None = None) -> Any:
            send = self.t.send_frame

            async def send_frame(seq: int, payload: bytes) -> None:
                if not first_sent:
                    first_sent.append(loop.time())  # audio time 0 left the caller's mouth
                await send(seq, payload)

            self.t.send_frame = send_frame  # type: ignore[method-assign]
            return await super().run(pcm, out_wav)

        def _agent_audio(self, payload: bytes) -> None:
            arrivals.append(loop.time())
            super()._agent_audio(payload)

    call_id = "demo-call"
    t_start = time.perf_counter()
    try:
        async with Edge(cfg) as edge:
            token = edge.issue_token(call_id)
            if transport == "quic":
                tr: Any = QuicCallerTransport("127.0.0.1", edge.quic_port, token=token, call_id=call_id,
                                              codec=codec, rate=rate, cafile=edge.cert_path)
            else:
                tr = WsCallerTransport(f"wss://localhost:{edge.ws_port}/media", token=token,
                                       call_id=call_id, cafile=edge.cert_path)
            caller = _Caller(tr, call_id=call_id, codec=codec, rate=rate, tail_s=tail_s)
            t0 = loop.time()
            res = await caller.run(pcm)
            assert edge.handler is not None
            summary = await edge.handler.wait_ended(call_id, 15.0)
            metrics_text = edge.metrics.exposition().decode()
        trace = read_trace(summary.trace) if summary.trace else None
        mismatch = first_mismatch(trace) if trace is not None else "no trace"
    finally:
        if tmp is not None:
            tmp.cleanup()
    sends = sorted(t.last_speech_sent_at for t in res.turns)
    turns = []
    for t in summary.turns:
        row: dict[str, Any] = {
            "turn": t.turn, "at_s": round(t.last_speech_at - t0, 3),
            "turn_latency_ms": None if t.turn_latency_ms is None else round(t.turn_latency_ms, 2),
            "eot_silence_ms": t.eot_silence_ms,
            "model_ttfa_ms": None if t.model_ttfa_ms is None else round(t.model_ttfa_ms, 2),
            "edge_added_ms": None if t.edge_added_ms is None else round(t.edge_added_ms, 3),
            "mouth_to_ear_ms": None, "from_speech_end_ms": None,
            "speculative": t.speculative_silence_ms is not None,
        }
        # the caller's own end of this turn: the nearest one within 0.5 s (the engine's last
        # speech frame can precede the caller's VAD end: the evidence policy's noise gate
        # ends a burst on its last frame above the noise floor, the VAD's hangover does not)
        near_sends = [k for k, x in enumerate(sends) if abs(x - t.last_speech_at) <= 0.5]
        i = min(near_sends, key=lambda k: abs(sends[k] - t.last_speech_at)) if near_sends else -1
        j = bisect.bisect_left(arrivals, t.first_audio_at) if t.first_audio_at is not None else len(arrivals)
        if i >= 0 and j < len(arrivals):
            row["mouth_to_ear_ms"] = round((arrivals[j] - sends[i]) * 1000, 2)
            # from the caller's real end of speech: the labelled end of the segment this turn
            # closed (on the caller's clock), else the turn's last speech frame sent
            end = sends[i]
            if labelled_ends is not None and first_sent:
                near = [first_sent[0] + e for e in labelled_ends
                        if t.last_speech_at - 1.0 <= first_sent[0] + e <= t.last_speech_at + 0.05]
                end = near[-1] if near else end
            row["from_speech_end_ms"] = round((arrivals[j] - end) * 1000, 2)
        turns.append(row)
    lat = [r["turn_latency_ms"] for r in turns if r["turn_latency_ms"] is not None]
    added = [r["edge_added_ms"] for r in turns if r["edge_added_ms"] is not None]
    m2e = [r["mouth_to_ear_ms"] for r in turns if r["mouth_to_ear_ms"] is not None]
    from_end = [r["from_speech_end_ms"] for r in turns if r["from_speech_end_ms"] is not None]

    def counter(name: str) -> float:
        return sum(float(line.split()[-1]) for line in metrics_text.splitlines()
                   if line.startswith(name) and not line.startswith("#"))

    return {
        "calls": names, "transport": transport, "codec": codec, "rate": rate,
        "audio_s": round(len(pcm) / 2 / rate, 2), "wall_s": round(time.perf_counter() - t_start, 2),
        "turns": turns,
        "turn_latency_ms_p50": _pct(lat, 50), "turn_latency_ms_p95": _pct(lat, 95),
        "edge_added_ms_p50": _pct(added, 50), "edge_added_ms_p99": _pct(added, 99),
        "mouth_to_ear_ms_p50": _pct(m2e, 50), "mouth_to_ear_ms_p95": _pct(m2e, 95),
        "turn_latency_from_speech_end_ms_p50": _pct(from_end, 50),
        "turn_latency_from_speech_end_ms_p95": _pct(from_end, 95),
        "turn_latency_from_speech_end_ms_p99": _pct(from_end, 99),
        "end_of_turn_rule": cfg.turn.end_of_turn_rule,
        "end_of_turn_silence_ms": cfg.turn.end_of_turn_silence_ms,
        "end_of_turn_final_ms": cfg.turn.end_of_turn_final_ms,
        "end_of_turn_neutral_ms": cfg.turn.end_of_turn_neutral_ms,
        "end_of_turn_final_pct": cfg.turn.end_of_turn_final_pct,
        "speculate": speculate, "model_ttfa_median_ms": ttfa_ms, "model_ttfa_sigma": ttfa_sigma,
        "speculations_started": counter('clutchcall_speculations_total{outcome="started"}'),
        "speculations_released": counter('clutchcall_speculations_total{outcome="released"}'),
        "speculations_retracted": counter('clutchcall_speculations_total{outcome="retracted"}'),
        "speculation_wasted_model_s": round(counter("clutchcall_speculation_wasted_model_seconds_total"), 3),
        "backchannels_filtered": counter("clutchcall_backchannels_filtered_total"),
        "barge_ins_confirmed": counter('clutchcall_barge_ins_total{outcome="confirmed"}'),
        "barge_ins_dismissed": counter('clutchcall_barge_ins_total{outcome="dismissed"}'),
        "frames_sent": res.frames_sent, "agent_frames_received": res.agent_frames_received,
        "clear_playouts": res.clear_playouts, "call_failed": summary.failed,
        "engine_inputs": summary.engine_inputs, "engine_outputs": summary.engine_outputs,
        "trace_replay_exact": mismatch is None,
        "trace_replay_mismatch": None if mismatch is None else str(mismatch),
        "trace": summary.trace if trace_dir else None,
    }


def _table(r: dict[str, Any]) -> str:
    def f(v: Any, nd: int = 1) -> str:
        return "-" if v is None else f"{v:.{nd}f}"

    lines = [(f"clutchcall demo: {' + '.join(r['calls'])} over {r['transport']} ({r['codec']} {r['rate']} Hz), "
             f"{r['audio_s']} s of caller audio, embedded model"),
             "",
             (f"{'turn':>4}  {'at (s)':>7}  {'turn latency':>12}  {'= silence':>9}  {'+ model':>8}  "
             f"{'+ edge-added':>12}  {'mouth-to-ear':>12}"),
             f"{'':>4}  {'':>7}  {'(edge, ms)':>12}  {'(ms)':>9}  {'(ms)':>8}  {'(ms)':>12}  {'(caller, ms)':>12}"]
    for t in r["turns"]:
        lines.append(f"{t['turn']:>4}  {t['at_s']:>7.2f}  {f(t['turn_latency_ms']):>12}  {f(t['eot_silence_ms'], 0):>9}  "
                     f"{f(t['model_ttfa_ms']):>8}  {f(t['edge_added_ms'], 2):>12}  {f(t['mouth_to_ear_ms']):>12}")
    if not r["turns"]:
        lines.append("  (no committed turns)")
    else:
        lines.append("  (engine turn numbers; a turn the caller barged into before its reply started is not listed)")
    lines += ["",
              (f"turn latency p50 {f(r['turn_latency_ms_p50'])} ms, p95 {f(r['turn_latency_ms_p95'])} ms; "
              f"edge-added p50 {f(r['edge_added_ms_p50'], 2)} ms, p99 {f(r['edge_added_ms_p99'], 2)} ms; "
              f"mouth-to-ear p50 {f(r['mouth_to_ear_ms_p50'])} ms; from end of speech p50 "
              f"{f(r['turn_latency_from_speech_end_ms_p50'])} ms"),
              (f"speculative commit {'on' if r['speculate'] else 'off'}: started "
               f"{r['speculations_started']:.0f}, released {r['speculations_released']:.0f}, "
               f"retracted {r['speculations_retracted']:.0f} ({r['speculation_wasted_model_s']} s "
               "of model time wasted)"),
              (f"backchannels filtered {r['backchannels_filtered']:.0f}, barge-ins confirmed "
              f"{r['barge_ins_confirmed']:.0f} / dismissed {r['barge_ins_dismissed']:.0f}, "
              f"playout clears {r['clear_playouts']}"),
              f"recorded trace: {r['engine_inputs']} engine inputs, {r['engine_outputs']} outputs; replay "
              + ("reproduces every action exactly" if r["trace_replay_exact"] else f"MISMATCH: {r['trace_replay_mismatch']}")
              + (f" ({r['trace']})" if r["trace"] else ""),
              f"wall time {r['wall_s']} s"]
    if r["call_failed"]:
        lines.append(f"call failed: {r['call_failed']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the demo, print the table (or JSON); return 0, or 1 if the call failed or the
    trace replay did not reproduce the engine's actions."""
    logging.getLogger("clutchcall").setLevel(logging.ERROR)
    r = asyncio.run(run_demo(calls=args.call, wav=args.wav, transport=args.transport,
                             ttfa_ms=args.ttfa_ms, trace_dir=args.trace_dir, tail_s=args.tail,
                             ttfa_sigma=args.ttfa_sigma, seed=args.seed,
                             speculate=not args.no_speculate,
                             end_of_turn_silence_ms=args.end_of_turn_silence_ms,
                             end_of_turn_rule=args.end_of_turn_rule,
                             end_of_turn_final_ms=args.end_of_turn_final_ms,
                             end_of_turn_neutral_ms=args.end_of_turn_neutral_ms,
                             end_of_turn_final_pct=args.end_of_turn_final_pct))
    print(json.dumps(r) if args.json else _table(r))
    sys.stdout.flush()
    return 0 if (r["trace_replay_exact"] and not r["call_failed"]) else 1
