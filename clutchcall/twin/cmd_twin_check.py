"""``clutchcall twin check``: the real edge over an emulated WAN against the simulator.

Theory of operation: one :class:`~clutchcall.netem.WanEmulator` (RTT, loss) joins an edge
namespace and a caller namespace. For each transport (QUIC/MoQT, then WebSocket/TLS) the
harness (:func:`clutchcall.netem.harness.run_pair`) starts the real edge
(:func:`clutchcall.twin.edge.serve_edge`: both ingresses, the production per-call pipeline and
turn engine, the embedded model with a fixed time to first audio) and one caller process
(:func:`clutchcall.twin.caller.place_calls`) placing N corpus calls concurrently with the
production caller code. The raw caller times become mouth-to-ear turn latency per committed
turn (:mod:`clutchcall.twin.measure`). Then the simulator runs the same calls -- the same edge
VAD decisions, the same link (RTT/2 each way, the same loss rate), the caller leg's transport
model (``quic`` / ``tcp``) with the ingress's jitter-buffer depth, and a model whose time to
first audio, reply lengths, leg delay and cancel behaviour are the embedded model's -- and the
percentiles (p50/p95/p99) are put side by side with their relative error. ``--json`` prints
one object; ``max_rel_error`` per transport is the worst of the three percentiles.

Everything is bounded: calls are cut to ``--max-call-s``, the callers get a deadline, the edge
is stopped by SIGTERM, and the emulator removes its namespaces on exit (also on error).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

from clutchcall.progress import add_flag, bar, wanted

TRANSPORTS = ("quic", "ws")
SIM_TRANSPORT = {"quic": "quic", "ws": "tcp"}
TAIL_S = 2.0


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    parser.add_argument("--rtt-ms", type=float, default=50.0, help="emulated round-trip time (ms, default 50)")
    parser.add_argument("--loss", type=float, default=0.01, help="random packet loss each way (default 0.01)")
    parser.add_argument("--calls", type=int, default=4, help="corpus calls per transport (default 4, max 20)")
    parser.add_argument("--ttfa-ms", type=int, default=300, help="embedded model time to first audio (ms)")
    parser.add_argument("--max-call-s", type=float, default=14.0, help="cut each call's audio to this length (s)")
    parser.add_argument("--corpus", default=None, help="labelled-call directory (default: the checked-in corpus)")
    parser.add_argument("--transports", default="quic,ws", help="comma list of quic, ws (default both)")
    parser.add_argument("--seed", type=int, default=1, help="emulator and simulator seed")
    parser.add_argument("--out", default=None, help="also write the full result (with per-turn rows) as JSON here")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_flag(parser)


def _corpus_wavs(corpus: str | None, n: int) -> list[str]:
    from clutchcall.sim.runner import default_corpus

    root = Path(corpus) if corpus else default_corpus()
    wavs = sorted(str(p) for p in root.glob("*.wav") if p.with_suffix(".json").exists())
    if not wavs:
        from clutchcall.engine.errors import ConfigError

        raise ConfigError(f"twin check: no labelled calls in {root}")
    return wavs[:n]


def _cut(wav: str, max_s: float, out_dir: str) -> str:
    with wave.open(wav, "rb") as w:
        rate, n = w.getframerate(), w.getnframes()
        keep = min(n, int(max_s * rate))
        params, data = w.getparams(), w.readframes(keep)
    if keep == n:
        return wav
    out = os.path.join(out_dir, Path(wav).name)
    with wave.open(out, "wb") as w:
        w.setparams(params)
        w.writeframes(data)
    return out


def reply_lengths_ms() -> list[int]:
    """Return the length (ms) of each reply the embedded model speaks by default."""
    from clutchcall.prod.model.protocol import SAMPLE_RATE
    from clutchcall.prod.model.server import ModelServerConfig
    from clutchcall.prod.model.speech import render_speech_sync

    cfg = ModelServerConfig()
    return [len(render_speech_sync(r, SAMPLE_RATE, cfg.voice, cfg.speed)) * 1000 // (2 * SAMPLE_RATE)
            for r in cfg.replies if r.strip()]


def sim_config(transport: str, *, rtt_ms: float, loss: float, ttfa_ms: int, replies_ms: list[int],
               frame_bytes: int, seed: int) -> Any:
    """Return the :class:`~clutchcall.sim.config.SimConfig` that models the twin's edge for one
    caller-leg transport (see the module docstring)."""
    from clutchcall.engine import TurnConfig
    from clutchcall.prod.ingress.config import IngressConfig
    from clutchcall.sim.config import ModelConfig, NetConfig, SimConfig

    depth = IngressConfig().jitter_depth_ms if transport == "quic" else 0
    # both ends of the real QUIC leg are aioquic: it ACKs every packet within 1 ms
    ack = {"quic_ack_every": 1, "quic_ack_delay_ms": 1.0} if transport == "quic" else {}
    net = NetConfig.symmetric(transport=SIM_TRANSPORT[transport], rtt_ms=rtt_ms, loss=loss,
                              late_frame_ms=float(depth), playout_delay_ms=float(depth),
                              jitter_buffer="playout", frame_bytes=frame_bytes, **ack)
    model = ModelConfig(ttfa_median_ms=float(ttfa_ms), ttfa_sigma=0.0, prefill=True,
                        reply_min_ms=min(replies_ms), reply_max_ms=max(replies_ms),
                        cancel_delay_ms=1.0, model_leg_ms=0.5)
    return SimConfig(turn=TurnConfig(), net=net, model=model, seed=seed)


def _frame_bytes(transport: str, codec: str, rate: int) -> int:
    if transport == "ws":  # a Twilio media JSON message: 160 B u-law in base64 + ~150 B JSON
        return 400
    return rate * 2 * 20 // 1000 + 24  # PCM16 frame + MoQT object header


def run_check(*, rtt_ms: float = 50.0, loss: float = 0.01, calls: int = 4, ttfa_ms: int = 300,
              max_call_s: float = 14.0, corpus: str | None = None,
              transports: tuple[str, ...] = TRANSPORTS, seed: int = 1,
              progress: Any = None) -> dict[str, Any]:
    """Run the twin check; return the result object (see :func:`configure` for the knobs).
    Raises ConfigError for bad settings and NetemError when the emulator cannot run."""
    from clutchcall.engine.errors import ConfigError
    from clutchcall.netem import WanEmulator
    from clutchcall.netem.harness import run_pair
    from clutchcall.netem.runner import python_argv
    from clutchcall.prod.ingress.auth import TokenAuthority
    from clutchcall.prod.ingress.tls import ensure_self_signed
    from clutchcall.sim.world import simulate_call
    from clutchcall.twin import measure
    from clutchcall.twin.caller import prepare_audio

    if not 1 <= calls <= 20:
        raise ConfigError("twin check: --calls must be 1..20")
    if not 0 <= loss < 0.5 or not 0 <= rtt_ms <= 1000 or not 1.0 <= max_call_s <= 60.0:
        raise ConfigError("twin check: need 0 <= loss < 0.5, 0 <= rtt-ms <= 1000, 1 <= max-call-s <= 60")
    for t in transports:
        if t not in TRANSPORTS:
            raise ConfigError(f"twin check: unknown transport {t!r}")
    say = progress or (lambda _m: None)
    t_start = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="clutchcall-twin-")
    cert, _key = ensure_self_signed(os.path.join(tmp, "tls"))
    auth_key = secrets.token_hex(16)
    authority = TokenAuthority(auth_key.encode())
    wavs = [_cut(w, max_call_s, tmp) for w in _corpus_wavs(corpus, calls)]
    replies_ms = reply_lengths_ms()
    eot_ms = 500.0
    from clutchcall.engine import TurnConfig

    eot_ms = float(TurnConfig().end_of_turn_silence_ms)
    result: dict[str, Any] = {
        "rtt_ms": rtt_ms, "loss": loss, "calls": len(wavs), "ttfa_ms": ttfa_ms, "seed": seed,
        "wavs": [Path(w).name for w in wavs], "reply_lengths_ms": replies_ms, "transports": {},
    }
    longest = 0.0
    for w in wavs:
        with wave.open(w, "rb") as f:
            longest = max(longest, f.getnframes() / f.getframerate())
    with WanEmulator(rtt_ms=rtt_ms, loss=loss, seed=seed) as wan:
        for ti, transport in enumerate(transports):
            ids = [f"twin-{transport}-{i}" for i in range(len(wavs))]
            port = 4433 if transport == "quic" else 8443
            specs = [{"call_id": cid, "transport": transport, "wav": w, "port": port,
                      "token": authority.issue(cid, time.time() + 3600), "cafile": str(cert)}
                     for cid, w in zip(ids, wavs)]
            edge_argv = python_argv("clutchcall.twin.edge:serve_edge", call_ids=[], ttfa_ms=ttfa_ms,
                                    quic_port=4433, ws_port=8443, cert_dir=os.path.join(tmp, "tls"),
                                    auth_key=auth_key, max_s=longest + 60.0)
            caller_argv = python_argv("clutchcall.twin.caller:place_calls", calls=specs,
                                      host=wan.edge_addr, tail_s=TAIL_S)
            say(f"twin: {transport}: {len(specs)} calls over rtt {rtt_ms} ms, loss {loss}")
            edge, callers = run_pair(wan, edge_argv, [caller_argv], ready_timeout=30.0,
                                     timeout=longest + len(specs) * 0.25 + TAIL_S + 30.0,
                                     edge_grace=0.2, edge_stop_timeout=10.0)
            crec = callers[0].result
            if not isinstance(crec, list):
                raise ConfigError(f"twin check: {transport} callers failed: "
                                  f"{callers[0].stderr.strip()[-1500:] or callers[0].stdout[-500:]}")
            erec = edge.result if isinstance(edge.result, dict) else {}
            result["transports"][transport] = _score(
                transport, crec, erec, rtt_ms=rtt_ms, loss=loss, ttfa_ms=ttfa_ms, eot_ms=eot_ms,
                replies_ms=replies_ms, seed=seed + ti, simulate_call=simulate_call,
                measure=measure, prepare_audio=prepare_audio)
    result["netem"] = wan.stats  # the forwarder's counters, set when the emulator closed
    result["wall_s"] = round(time.monotonic() - t_start, 2)
    return result


def _score(transport: str, crec: list[dict[str, Any]], erec: dict[str, Any], *, rtt_ms: float,
           loss: float, ttfa_ms: int, eot_ms: float, replies_ms: list[int], seed: int,
           simulate_call: Any, measure: Any, prepare_audio: Any) -> dict[str, Any]:
    meas_rows: list[dict[str, Any]] = []
    pred_rows: list[dict[str, Any]] = []
    errors = []
    for rec in crec:
        if rec.get("error"):
            errors.append(f"{rec['call_id']}: {rec['error']}")
            continue
        pcm, rate, codec = prepare_audio(rec["wav"], transport)
        flags = measure.edge_vad(pcm, rate, codec)
        for row in measure.caller_turns(rec, flags, eot_ms=eot_ms, rtt_ms=rtt_ms, ttfa_ms=ttfa_ms):
            meas_rows.append({"call": rec["call_id"], **row})
        cfg = sim_config(transport, rtt_ms=rtt_ms, loss=loss, ttfa_ms=ttfa_ms, replies_ms=replies_ms,
                         frame_bytes=_frame_bytes(transport, codec, rate), seed=seed)
        run = simulate_call(measure.sim_call(rec["call_id"], flags, TAIL_S), cfg)
        floor = eot_ms + 2 * cfg.model.model_leg_ms + rtt_ms + ttfa_ms
        for t in run.turns:
            lat = (t["first_audio_caller_s"] - t["end_of_speech_caller_s"]) * 1000.0
            lat = lat if math.isfinite(lat) else math.nan
            pred_rows.append({"call": rec["call_id"], "end_of_speech_s": t["end_of_speech_caller_s"],
                              "turn_latency_ms": lat, "edge_added_ms": lat - floor})
    edge_turns = [{"call": cid, **r} for cid, recs in erec.get("turns", {}).items() for r in recs]
    # where the time went, per measured turn: caller send of the last speech frame -> its
    # nominal arrival at the engine (uplink + jitter buffer) and -> first agent frame sent
    for row in meas_rows:
        near = [e for e in edge_turns if e["call"] == row["call"]
                and abs(e["last_speech_at"] - row["end_of_speech_s"]) < 1.0]
        if near:
            e = min(near, key=lambda e: abs(e["last_speech_at"] - row["end_of_speech_s"]))
            row["uplink_ms"] = round((e["last_speech_at"] - row["end_of_speech_s"]) * 1000, 2)
            if e.get("first_audio_at") is not None and math.isfinite(row["first_audio_s"]):
                row["downlink_ms"] = round((row["first_audio_s"] - e["first_audio_at"]) * 1000, 2)
            row["edge_turn_latency_ms"] = e.get("turn_latency_ms")
    m_lat = measure.percentiles([r["turn_latency_ms"] for r in meas_rows])
    p_lat = measure.percentiles([r["turn_latency_ms"] for r in pred_rows])
    rel = measure.rel_errors(m_lat, p_lat)
    finite = [v for v in rel.values() if v is not None]
    return {
        "sim_transport": SIM_TRANSPORT[transport],
        "turns_measured": len(meas_rows), "turns_predicted": len(pred_rows),
        "replies_measured": sum(1 for r in meas_rows if math.isfinite(r["turn_latency_ms"])),
        "measured": m_lat, "predicted": p_lat, "rel_error": rel,
        "max_rel_error": max(finite) if finite else None,
        "edge_added_ms": {
            "measured": measure.percentiles([r["edge_added_ms"] for r in meas_rows]),
            "predicted": measure.percentiles([r["edge_added_ms"] for r in pred_rows]),
            "at_edge": measure.percentiles([r["edge_added_ms"] for r in edge_turns
                                            if r.get("edge_added_ms") is not None]),
        },
        "edge_turn_latency_ms": measure.percentiles([r["turn_latency_ms"] for r in edge_turns
                                                     if r.get("turn_latency_ms") is not None]),
        "edge_stats": {k: erec.get(k) for k in ("quic_stats", "ws_stats", "model")},
        "errors": errors,
        "rows": {"measured": meas_rows, "predicted": pred_rows, "edge": edge_turns},
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}" if isinstance(v, float) else str(v)


def table(result: dict[str, Any]) -> str:
    """Return the side-by-side text table of a result."""
    lines = [(f"twin check: rtt {result['rtt_ms']} ms, loss {result['loss']}, {result['calls']} calls, "
              f"model ttfa {result['ttfa_ms']} ms ({result.get('wall_s', '?')} s)"),
             f"{'transport':<10}{'metric':<22}{'p50':>9}{'p95':>9}{'p99':>9}"]
    for tname, t in result["transports"].items():
        lab = f"{tname}/{t['sim_transport']}"
        for name, d in (("measured ms", t["measured"]), ("predicted ms", t["predicted"])):
            lines.append(f"{lab:<10}{name:<22}" + "".join(f"{_fmt(d[k]):>9}" for k in ("p50", "p95", "p99")))
        rel = t["rel_error"]
        lines.append(f"{lab:<10}{'rel error %':<22}" + "".join(
            f"{_fmt(None if rel[k] is None else 100 * rel[k]):>9}" for k in ("p50", "p95", "p99")))
        for name, key in (("edge-added meas ms", "measured"), ("edge-added pred ms", "predicted"),
                          ("edge-added @edge ms", "at_edge")):
            d = t["edge_added_ms"][key]
            lines.append(f"{lab:<10}{name:<22}" + "".join(f"{_fmt(d[k]):>9}" for k in ("p50", "p95", "p99")))
        mre = t["max_rel_error"]
        lines.append(f"{lab:<10}turns measured {t['turns_measured']} (replied {t['replies_measured']}), "
                     f"predicted {t['turns_predicted']}; max rel error "
                     f"{'-' if mre is None else f'{100 * mre:.1f}%'}")
        for e in t["errors"]:
            lines.append(f"  error: {e}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the command; return 0 (1 if a transport produced no measured turn)."""
    transports = tuple(t.strip() for t in args.transports.split(",") if t.strip())
    with bar(len(transports), "twin check", enabled=wanted(args), unit="transport") as b:
        def say(msg: str) -> None:  # one message as each transport starts
            if b.disable:
                if not (getattr(args, "no_progress", False) or args.json):
                    print(msg, file=sys.stderr, flush=True)
                return
            if b.postfix:
                b.update(1)
            b.set_postfix_str(msg.removeprefix("twin: "))

        res = run_check(rtt_ms=args.rtt_ms, loss=args.loss, calls=args.calls,
                        ttfa_ms=args.ttfa_ms, max_call_s=args.max_call_s, corpus=args.corpus,
                        transports=transports, seed=args.seed, progress=say)
        b.update(b.total - b.n)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1, default=str))
    if args.json:
        slim = {k: v for k, v in res.items() if k != "transports"}
        slim["transports"] = {k: {kk: vv for kk, vv in v.items() if kk != "rows"}
                              for k, v in res["transports"].items()}
        print(json.dumps(slim, default=str))
    else:
        print(table(res))
    return 0 if all(t["replies_measured"] for t in res["transports"].values()) else 1
