"""``clutchcall call``: place a real call with a WAV file and report mouth-to-ear turn latency.

Without ``--edge`` it starts a loopback edge in this process (QUIC and WebSocket ingress with
a self-signed certificate and the echo handler in turn mode), issues a token and calls it:
a self-contained demo. With ``--edge HOST:PORT --token T --call-id C`` it calls a running edge
(``--transport webtransport``: the edge's ``--web-port``, MoQT inside a WebTransport session).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wav", required=True, help="16-bit mono WAV to speak (resampled if needed)")
    parser.add_argument("--transport", choices=("quic", "ws", "webtransport", "browser"), default="quic",
                        help="webtransport: MoQT over HTTP/3 WebTransport as the browser caller does; "
                             "browser: the edge's page in headless Chromium with the WAV as microphone "
                             "(both: --edge HOST:WEB_PORT of `serve --web-port`; browser needs "
                             "/usr/bin/chromium and playwright)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--out", default="agent.wav", help="WAV file of what the caller heard")
    parser.add_argument("--edge", default=None, help="HOST:PORT of a running edge (default: a loopback echo edge)")
    parser.add_argument("--token", default=None, help="call token (required with --edge)")
    parser.add_argument("--call-id", default=None, help="call id (required with --edge)")
    parser.add_argument("--cafile", default=None, help="CA/cert file to trust for the edge")
    parser.add_argument("--codec", choices=("pcm16", "opus", "g711_ulaw", "g711_alaw"), default="pcm16",
                        help="QUIC caller codec (WebSocket is always G.711 u-law 8 kHz)")
    parser.add_argument("--echo", choices=("turns", "frames"), default="turns",
                        help="local edge's echo handler: replay each turn, or echo every frame")
    parser.add_argument("--tail", type=float, default=2.0, help="seconds to keep listening after the file")
    parser.add_argument("--quic-core", choices=("aioquic", "qh3"), default=None,
                        help="QUIC implementation (default: $CLUTCHCALL_QUIC_CORE, else the benchmark's choice)")
    parser.add_argument("--audio-transport", choices=("auto", "stream"), default="auto",
                        help="auto: audio in QUIC DATAGRAMs where the edge negotiated them; stream: streams")


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import soxr

    from clutchcall.prod.caller.client import Caller
    from clutchcall.prod.caller.quic_transport import QuicCallerTransport
    from clutchcall.prod.caller.ws_transport import WsCallerTransport
    from clutchcall.traces.labels import read_wav

    rate, samples = read_wav(args.wav, rates=None)
    pcm = samples.tobytes()
    codec = "g711_ulaw" if args.transport == "ws" else args.codec
    want = 8000 if codec.startswith("g711") else (rate if rate in (8000, 16000, 48000) else 16000)
    if rate != want:
        pcm = soxr.resample(np.frombuffer(pcm, dtype="<i2"), rate, want).astype("<i2").tobytes()
    edge_objs: list[Any] = []
    if args.edge is None:
        from clutchcall.prod.ingress.call import EchoHandler
        from clutchcall.prod.ingress.config import IngressConfig
        from clutchcall.prod.ingress.quic import QuicIngress
        from clutchcall.prod.ingress.ws import WsIngress

        cfg = IngressConfig(cert_dir=tempfile.mkdtemp(prefix="clutchcall-tls-"),
                            **({"quic_core": args.quic_core} if args.quic_core else {}))
        handler = EchoHandler(turn_silence_ms=None if args.echo == "frames" else 400)
        if args.transport in ("webtransport", "browser"):
            from clutchcall.prod.caller.browser import echo_web_edge

            edge: Any = echo_web_edge(cfg, handler, page=args.transport == "browser")
        else:
            edge = QuicIngress(cfg, handler) if args.transport == "quic" else WsIngress(cfg, handler)
        port = await edge.start()
        edge_objs.append(edge)
        host, call_id = "127.0.0.1", args.call_id or "demo-call"
        token = edge.authority.issue(call_id, time.time() + 3600)
        cafile = edge.cert_path
    else:
        if not (args.token and args.call_id):
            raise SystemExit("--edge needs --token and --call-id")
        host, _, p = args.edge.rpartition(":")
        port, call_id, token, cafile = int(p), args.call_id, args.token, args.cafile
    if args.transport == "browser":
        try:
            return await _browser(args, host, port, call_id, token, cafile, pcm, want)
        finally:
            for e in edge_objs:
                await e.stop()
    if args.transport == "quic":
        tr: Any = QuicCallerTransport(host, port, token=token, call_id=call_id, codec=codec, rate=want, cafile=cafile,
                                      quic_core=args.quic_core, audio_transport=args.audio_transport)
    elif args.transport == "webtransport":
        from clutchcall.prod.caller.webtransport_client import WebTransportCallerTransport

        tr = WebTransportCallerTransport(host, port, token=token, call_id=call_id, codec=codec, rate=want,
                                         cafile=cafile)
    else:
        tr = WsCallerTransport(f"wss://localhost:{port}/media" if args.edge is None else f"wss://{host}:{port}/media",
                               token=token, call_id=call_id, cafile=cafile)
    try:
        res = await Caller(tr, call_id=call_id, codec=codec, rate=want, tail_s=args.tail).run(pcm, out_wav=args.out)
    finally:
        for e in edge_objs:
            await e.stop()
    return res.summary()


async def _browser(args: argparse.Namespace, host: str, port: int, call_id: str, token: str, cafile: str | None,
                   pcm: bytes, rate: int) -> dict[str, Any]:
    """``--transport browser``: the page in headless Chromium (clutchcall.prod.caller.browser)."""
    import numpy as np

    from clutchcall.prod.caller.browser import browser_call
    from clutchcall.prod.ingress.tls import presented_cert_sha256
    from clutchcall.prod.web.server import page_url

    # pin the leaf the edge presents (verified with --cafile), not the file --cafile names
    leaf = await asyncio.to_thread(presented_cert_sha256, host, port, cafile) if cafile else None
    url = page_url(host, port, call_id=call_id, token=token, cert_hash=leaf)
    with tempfile.TemporaryDirectory(prefix="clutchcall-browser-") as tmp:
        return await asyncio.to_thread(browser_call, url, np.frombuffer(pcm, dtype="<i2"), rate, workdir=tmp,
                                       tail_s=args.tail)


def run(args: argparse.Namespace) -> int:
    summary = asyncio.run(_main(args))
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"call {summary['call_id']} over {summary['transport']} ({summary['codec']}/{summary['rate']} Hz): "
          f"connect {summary['connect_ms']} ms, sent {summary['frames_sent']} frames, "
          f"received {summary['agent_frames_received']} agent frames "
          f"(played {summary.get('agent_frames_played', summary.get('agent_played_s'))}, "
          f"cleared {summary.get('agent_frames_cleared', summary.get('clear_playouts'))})")
    for t in summary["turns"]:
        print(f"  turn {t['turn']}: mouth-to-ear turn latency {t['mouth_to_ear_ms']} ms")
    print(f"  p50 {summary['mouth_to_ear_ms_p50']} ms; heard audio written to {summary['out_wav']}")
    return 0


if __name__ == "__main__":
    from clutchcall.cli import main

    sys.exit(main(["call", *sys.argv[1:]]))
