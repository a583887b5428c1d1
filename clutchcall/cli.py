"""The one ``clutchcall`` command line, with subcommands.

Each subcommand lives in the part of the tree it belongs to, as a module exposing
``configure(parser: argparse.ArgumentParser) -> None`` and ``run(args) -> int``.
The table below maps command words to those modules; a module is imported only when its
command runs, so ``clutchcall --help`` stays fast and one part's heavy imports (aioquic,
polars) never slow another's command.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# command words -> (module, one-line help). Add a line here for a new subcommand.
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("engine", "demo"): ("clutchcall.tools.cmd_engine_demo", "run the turn engine on a scripted call and print its actions"),
    ("bench", "engine"): ("clutchcall.tools.cmd_bench_engine", "benchmark the turn engine (frames/s, us per frame)"),
    ("trace", "show"): ("clutchcall.traces.cmd_trace_show", "print a recorded trace's header, counts and rows"),
    ("corpus", "build"): ("clutchcall.traces.cmd_corpus_build", "generate a deterministic labelled corpus (OUT_DIR --calls N --seed S)"),
    ("corpus", "stats"): ("clutchcall.traces.cmd_corpus_stats", "print a corpus's counts by kind and channel, and durations"),
    ("corpus", "validate"): ("clutchcall.traces.cmd_corpus_validate", "check every labelled call and recorded trace in a directory"),
    ("sim", "run"): ("clutchcall.sim.cmd_sim_run", "simulate labelled calls over a modelled caller leg; summary + Parquet"),
    ("sim", "sweep"): ("clutchcall.sim.cmd_sim_sweep", "grid-search turn-engine knobs on labelled calls (parallel); Pareto fronts, heatmaps"),
    ("sim", "compare"): ("clutchcall.sim.cmd_sim_compare", "replay calls under peer-policy presets (naive, livekit, pipecat, clutchcall)"),
    ("sim", "replay"): ("clutchcall.sim.cmd_sim_replay", "replay a recorded trace's inputs through the engine and check its actions"),
    ("eval",): ("clutchcall.sim.cmd_eval", "score a directory of labelled calls against their labels (--json)"),
    ("bench", "sim"): ("clutchcall.sim.cmd_bench_sim", "benchmark the simulator (simulated call-seconds per wall-second)"),
    ("bench", "callerleg"): ("clutchcall.prod.caller.cmd_bench_callerleg", "benchmark the caller leg: MoQT codec objects/s and loopback calls over QUIC vs WebSocket"),
    ("edge", "echo"): ("clutchcall.prod.ingress.cmd_edge_echo", "run the QUIC/MoQT and WebSocket/TLS ingresses with the echo handler (demo edge)"),
    ("call",): ("clutchcall.prod.caller.cmd_call", "place a real call with a WAV over QUIC/MoQT or WebSocket/TLS; report mouth-to-ear turn latency"),
    ("bench", "pipeline"): ("clutchcall.prod.cmd_bench_pipeline", "benchmark N concurrent calls through the per-call pipeline and the embedded model"),
    ("bench", "callpath"): ("clutchcall.prod.cmd_bench_callpath", "benchmark the edge's per-frame compute path alone (decode, VAD, features, call core, resampling) on a virtual clock: CPU us per caller frame, a digest of every decision"),
    ("model", "serve"): ("clutchcall.prod.model.cmd_model_serve", "run the embedded reference model (OpenAI Realtime protocol) on loopback"),
    ("bench", "vad"): ("clutchcall.tools.cmd_bench_vad", "benchmark the VAD backends (webrtc, silero): CPU us per 20 ms frame"),
    ("bench", "audio"): ("clutchcall.tools.cmd_bench_audio", "benchmark the audio paths (real-time factor, calls per core)"),
    ("bench", "netem"): ("clutchcall.netem.cmd_bench_netem", "benchmark the WAN emulator against a veth baseline (RTT, packets/s, TCP, accuracy)"),
    ("netem",): ("clutchcall.netem.cmd_netem", "run a command in a namespace behind an emulated WAN link (delay, jitter, loss, rate)"),
    ("native", "echo"): ("clutchcall.native.cmd_native_echo", "run the shard-per-core QUIC echo service (io_uring/asyncio), optionally self-test it"),
    ("serve",): ("clutchcall.prod.edge.cmd_serve", "run the production edge: QUIC/MoQT + WebSocket ingress, turn engine, model leg (embedded model by default)"),
    ("demo",): ("clutchcall.prod.edge.cmd_demo", "one real call on loopback through the edge and the embedded model; table of turn latencies"),
    ("bench", "edge"): ("clutchcall.prod.edge.cmd_bench_edge", "load-test the edge: N concurrent real callers (QUIC or WebSocket); edge-added latency, CPU per call"),
    ("twin", "check"): ("clutchcall.twin.cmd_twin_check", "real edge over an emulated WAN vs the simulator: measured vs predicted turn latency"),
    ("bench", "native"): ("clutchcall.native.cmd_bench_native", "benchmark the native data plane (ring msgs/s, UDP io_uring vs asyncio, edge-added latency at N calls per io)"),
    ("bench", "soak"): ("clutchcall.prod.edge.cmd_bench_soak", "N concurrent real calls for S seconds against a real serve with traces on: frames lost, edge RSS and open fds over time"),
    ("bench", "fuzz"): ("clutchcall.prod.edge.cmd_bench_fuzz", "bounded seeded fuzz of a real serve (WebSocket JSON, tokens, MoQT control and data, datagrams); typed refusals only, the process survives"),
    ("bench", "hostile"): ("clutchcall.prod.edge.cmd_bench_hostile", "attack a real serve on loopback (idle TCP, abandoned QUIC handshakes, media floods); edge memory and fds"),
    ("bench", "ingress-io"): ("clutchcall.prod.ingress.cmd_bench_ingress_io", "benchmark the QUIC ingress echo round trip on io_uring vs asyncio datagram I/O (tens of callers)"),
}


def _usage() -> str:
    lines = ["usage: clutchcall COMMAND [ARGS...]", "", "commands:"]
    width = max(len(" ".join(k)) for k in COMMANDS)
    for words, (_, help_text) in sorted(COMMANDS.items()):
        lines.append(f"  {' '.join(words):<{width}}  {help_text}")
    lines.append("")
    lines.append("Run 'clutchcall COMMAND --help' for a command's options.")
    return "\n".join(lines)


def _match(argv: Sequence[str]) -> tuple[tuple[str, ...], list[str]] | None:
    best: tuple[str, ...] | None = None
    for words in COMMANDS:
        if tuple(argv[: len(words)]) == words and (best is None or len(words) > len(best)):
            best = words
    if best is None:
        return None
    return best, list(argv[len(best):])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named by ``argv`` (default ``sys.argv[1:]``); return its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if args[0] == "--version":
        from clutchcall import __version__

        print(f"clutchcall {__version__}")
        return 0
    found = _match(args)
    if found is None:
        print(f"clutchcall: unknown command: {' '.join(args[:2])}\n", file=sys.stderr)
        print(_usage(), file=sys.stderr)
        return 2
    words, rest = found
    module_name, help_text = COMMANDS[words]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog="clutchcall " + " ".join(words), description=help_text)
    module.configure(parser)
    ns = parser.parse_args(rest)
    from clutchcall.engine.errors import ConfigError

    try:
        return int(module.run(ns) or 0)
    except ConfigError as exc:
        print(f"clutchcall {' '.join(words)}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
