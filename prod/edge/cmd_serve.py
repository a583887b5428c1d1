"""``clutchcall serve``: run the production edge until SIGINT/SIGTERM (or ``--seconds``).

Theory of operation: builds an :class:`~clutchcall.prod.edge.EdgeConfig` from ``--config FILE``
(TOML, see :mod:`clutchcall.prod.edge.config`) with the flags on top, starts an
:class:`~clutchcall.prod.edge.Edge` (the embedded reference model unless ``--model-url``; the
API key of an external model comes from ``OPENAI_API_KEY``) and serves. With ``--ready-json``
it prints exactly one JSON line on stdout once both ingresses listen::

    {"ready": true, "quic_port": ..., "ws_port": ..., "metrics_port": ..., "token": ...,
     "call_id": ..., "tokens": {...}, "cert": ..., "model_url": ..., "pid": ...,
     "web_port": ..., "web_url": ..., "web_url_http": ...}

so tests and the twin check can drive it (``token`` is for ``--call-id``; ``--tokens N`` adds
tokens for call ids ``<call-id>-0`` .. ``<call-id>-(N-1)``; with ``CLUTCHCALL_AUTH_KEY`` set a
driver can also mint its own with ``TokenAuthority``; without it, a loopback edge uses a random
per-process key and a non-loopback ``--host`` is refused: one-line error, exit 2). On SIGINT/SIGTERM the edge stops
gracefully (calls get ``--grace`` seconds, traces are written) and, with ``--ready-json``, one
last line ``{"stopped": true, ...}`` gives the ingress counters. Logs are JSON lines on stderr.

The browser caller (``--web-port``, default 4433; -1: off) serves the page over HTTPS and the
WebTransport session on the same port number; the edge prints the URL to open in Chromium
(``web_url``: the call id, a token and, with the self-signed certificate, its SHA-256 for
``serverCertificateHashes`` in the fragment). On loopback with the self-signed certificate,
``web_url_http`` is the same page over plain ``http://127.0.0.1`` (a secure context, so no
certificate warning); ``web_url`` over HTTPS needs one click through the warning.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    parser.add_argument("--config", default=None, help="TOML config file ([edge], [turn], [pipeline], [model])")
    parser.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    parser.add_argument("--quic-port", type=int, default=None, help="UDP port of QUIC/MoQT (default 4443; 0: free)")
    parser.add_argument("--ws-port", type=int, default=None, help="TCP port of WebSocket/TLS (default 8443; 0: free)")
    parser.add_argument("--web-port", type=int, default=None,
                        help="browser caller: HTTPS page + WebTransport on this TCP/UDP port (default 4433; "
                             "0: free; -1: off)")
    parser.add_argument("--metrics-port", type=int, default=None, help="/metrics port on loopback (default 9464; -1: off)")
    parser.add_argument("--model-url", default=None, help="ws(s):// URL of an external Realtime model (key: $OPENAI_API_KEY)")
    parser.add_argument("--model-dialect", choices=("ga", "beta"), default=None,
                        help="Realtime protocol dialect of --model-url (default ga)")
    parser.add_argument("--ttfa-ms", type=int, default=None, help="embedded model's median time to first audio (ms)")
    parser.add_argument("--ttfa-sigma", type=float, default=None,
                        help="lognormal shape of the embedded model's time to first audio (default 0.35; 0: fixed)")
    parser.add_argument("--ttfa-seed", type=int, default=None, help="seed of those draws (default 1)")
    parser.add_argument("--no-speculate", action="store_true",
                        help="turn speculative commit off (TOML [turn] speculate = false)")
    parser.add_argument("--trace-dir", default=None, help="recorded traces, one per call (default .clutchcall/traces)")
    parser.add_argument("--no-trace", action="store_true", help="record no traces")
    parser.add_argument("--summary-json", default=None,
                        help="on stop, write every call's summary (turns, latencies) here (shard k: FILE.k)")
    parser.add_argument("--profile", default=None, help="profile the edge with cProfile; write pstats here on stop")
    parser.add_argument("--idle-timeout", type=float, default=None, help="end a call whose caller is silent this long (s)")
    parser.add_argument("--cert", default=None, help="PEM certificate (default: self-signed)")
    parser.add_argument("--key", default=None, help="PEM key of --cert")
    parser.add_argument("--cert-dir", default=None, help="where the self-signed certificate lives")
    parser.add_argument("--log-level", default=None, choices=("debug", "info", "warning", "error"))
    parser.add_argument("--ready-json", action="store_true", help="print one JSON line on stdout when listening")
    parser.add_argument("--call-id", default="call-0", help="call id of the printed token")
    parser.add_argument("--tokens", type=int, default=0, help="also print tokens for N call ids <call-id>-i")
    parser.add_argument("--token-ttl", type=float, default=3600.0)
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--grace", type=float, default=1.0, help="seconds calls get to end on shutdown")
    parser.add_argument("--io", choices=("asyncio", "uring", "auto", "xdp"), default=None,
                        help="QUIC datagram I/O: asyncio, io_uring, or AF_XDP on --iface via clutchcall.native "
                             "(falls back to asyncio with one log line)")
    parser.add_argument("--iface", default=None,
                        help="network interface of --io xdp (needs --host = its IPv4 address and a fixed --quic-port)")
    parser.add_argument("--quic-core", choices=("aioquic", "qh3"), default=None,
                        help="QUIC implementation (default: $CLUTCHCALL_QUIC_CORE, else the benchmark's choice)")
    parser.add_argument("--audio-transport", choices=("auto", "stream"), default=None,
                        help="auto: audio in QUIC DATAGRAMs where negotiated (default); stream: subgroup streams")
    parser.add_argument("--call-loop", choices=("batched", "per-call"), default=None,
                        help="batched: one scheduler per edge process runs every call's deadlines "
                             "(default); per-call: a loop timer per call")
    parser.add_argument("--call-loop-slack-ms", type=float, default=None,
                        help="batched call loop: run a pass this long (0..2 ms) after the earliest "
                             "deadline, so nearby deadlines share it (less CPU, up to this much later; "
                             "default 0)")
    parser.add_argument("--vad", choices=("webrtc", "silero"), default=None,
                        help="VAD backend for the caller's frames (default webrtc; silero needs "
                             "the [silero] extra); the same as [pipeline] vad in --config")
    parser.add_argument("--shards", type=int, default=1,
                        help="edge processes sharing the ports (SO_REUSEPORT, QUIC steered by connection ID)")


def config_from_args(args: argparse.Namespace) -> Any:
    """Return the EdgeConfig of ``--config`` with the flags applied. Raises ConfigError."""
    from clutchcall.prod.edge.config import load_config

    cfg = load_config(args.config)
    if args.config is None:  # the command's defaults (the dataclass's are for embedding)
        cfg = cfg.with_overrides(quic_port=4443, ws_port=8443, metrics_port=9464, web_port=4433,
                                 trace_dir=".clutchcall/traces")
    import dataclasses

    model = cfg.model
    if args.config is None:
        model = dataclasses.replace(model, ttfa_sigma=0.35)
    if args.ttfa_ms is not None:
        model = dataclasses.replace(model, time_to_first_audio_ms=args.ttfa_ms)
    if args.ttfa_sigma is not None:
        model = dataclasses.replace(model, ttfa_sigma=args.ttfa_sigma)
    if args.ttfa_seed is not None:
        model = dataclasses.replace(model, ttfa_seed=args.ttfa_seed)
    if getattr(args, "no_speculate", False):
        cfg = cfg.with_overrides(turn_speculate=False)
    if args.no_trace:
        cfg = cfg.with_overrides(trace_dir="")
    if getattr(args, "vad", None) is not None:
        cfg = dataclasses.replace(cfg, pipeline={**cfg.pipeline, "vad": args.vad})
    return cfg.with_overrides(host=args.host, quic_port=args.quic_port, ws_port=args.ws_port,
                              metrics_port=args.metrics_port, web_port=args.web_port, model_url=args.model_url,
                              model_dialect=args.model_dialect,
                              trace_dir=args.trace_dir, caller_idle_timeout_s=args.idle_timeout,
                              cert=args.cert, key=args.key, cert_dir=args.cert_dir,
                              log_level=args.log_level, model=model,
                              io=args.io, xdp_iface=args.iface, quic_core=args.quic_core,
                              audio_transport=args.audio_transport,
                              call_loop=getattr(args, "call_loop", None),
                              call_loop_slack_ms=getattr(args, "call_loop_slack_ms", None))


async def serve(args: argparse.Namespace) -> int:
    """Run the edge until a signal or ``--seconds``; return the exit code."""
    from clutchcall.prod.edge import Edge

    cfg = config_from_args(args)
    edge = Edge(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await edge.start()
    try:
        if args.ready_json:
            info = edge.info()
            info.update(ready=True, pid=os.getpid(), call_id=args.call_id,
                        token=edge.issue_token(args.call_id, args.token_ttl),
                        tokens={f"{args.call_id}-{i}": edge.issue_token(f"{args.call_id}-{i}", args.token_ttl)
                                for i in range(max(0, args.tokens))},
                        )
            if edge.web is not None:
                info.update(web_url=edge.page_url(args.call_id, args.token_ttl),
                            web_url_http=(edge.page_url(args.call_id, args.token_ttl, plain_http=True)
                                          if edge.web.loopback_http else None))
            print(json.dumps(info), flush=True)
        elif edge.web is not None:
            _print_page_urls(edge, args)
        try:
            await asyncio.wait_for(stop.wait(), args.seconds)
        except TimeoutError:
            pass
    finally:
        stats = edge.stats()
        await edge.stop(grace_s=args.grace)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if args.summary_json and edge.handler is not None:
        with open(args.summary_json, "w") as f:  # noqa: ASYNC230 -- once, at shutdown
            json.dump({"calls": [c.to_dict() for c in edge.handler.calls.values()],
                       "metrics": edge.metrics.exposition().decode()}, f)
    if args.ready_json:
        with contextlib.suppress(BrokenPipeError):  # whoever read the ready line may be gone
            print(json.dumps({"stopped": True, **stats}), flush=True)
    return 0


def _print_page_urls(edge: Any, args: argparse.Namespace) -> None:
    """Print where a person opens the browser caller (human-readable, on stdout)."""
    print(f"Browser caller for call {args.call_id}: open in Chromium", flush=True)
    if edge.web.loopback_http:
        print(f"  {edge.page_url(args.call_id, args.token_ttl, plain_http=True)}", flush=True)
        print("  (or over HTTPS, after accepting the self-signed certificate warning once:)", flush=True)
    print(f"  {edge.page_url(args.call_id, args.token_ttl)}", flush=True)


def serve_shards(args: argparse.Namespace) -> int:
    """``--shards N``: N edge processes on shared ports (see clutchcall.prod.edge.shards)."""
    import threading

    from clutchcall.prod.edge.shards import ready_info, sharded_edge

    cfg = config_from_args(args)
    ids = [args.call_id] + [f"{args.call_id}-{i}" for i in range(max(0, args.tokens))]
    sharded = sharded_edge(cfg, args.shards, ids, args.token_ttl, args.summary_json)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sharded.start(timeout=60.0)
    info = ready_info(sharded)
    if args.ready_json:
        tokens = info.pop("tokens")
        info.update(ready=True, pid=os.getpid(), call_id=args.call_id, token=tokens[args.call_id],
                    tokens={c: t for c, t in tokens.items() if c != args.call_id})
        print(json.dumps(info), flush=True)
    stop.wait(args.seconds)
    reports = sharded.stop()
    stats = [reports[k] for k in sorted(reports)]
    if args.ready_json:
        print(json.dumps({"stopped": True, "shards": stats}), flush=True)
    return 0


def check_auth_key(args: argparse.Namespace) -> None:
    """Refuse a non-loopback bind address without a configured auth key (no public default
    key). Returns None; raises ConfigError (the CLI prints it as one line, exit 2)."""
    from clutchcall.prod.ingress.auth import resolve_auth_key

    cfg = config_from_args(args)
    resolve_auth_key(cfg.host, cfg.auth_key)


def run(args: argparse.Namespace) -> int:
    """Serve; returns the exit code."""
    check_auth_key(args)
    if args.shards < 1:
        print("clutchcall serve: --shards must be >= 1", file=sys.stderr)
        return 2
    if args.shards > 1:
        if args.io == "xdp":
            print("clutchcall serve: --io xdp serves one interface queue: use --shards 1", file=sys.stderr)
            return 2
        return serve_shards(args)
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
        try:
            return int(prof.runcall(asyncio.run, serve(args)))
        finally:
            prof.dump_stats(args.profile)
    return asyncio.run(serve(args))
