"""``clutchcall edge echo``: run both caller-leg ingresses with the echo handler (a demo edge).

Prints the ports, the certificate to trust and a token for ``--call-id``, then serves until
interrupted or ``--duration`` seconds pass. The HMAC key comes from ``$CLUTCHCALL_AUTH_KEY``
(>= 16 bytes); without it, a random per-process key on loopback, and a non-loopback
``--host`` is refused. Pair with
``clutchcall call --edge 127.0.0.1:PORT --token T --call-id C --cafile CERT --wav FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--quic-port", type=int, default=4443)
    parser.add_argument("--ws-port", type=int, default=8443)
    parser.add_argument("--cert", default=None)
    parser.add_argument("--key", default=None)
    parser.add_argument("--cert-dir", default=".clutchcall/tls")
    parser.add_argument("--call-id", default="demo-call", help="print a token for this call id")
    parser.add_argument("--token-ttl", type=float, default=3600.0)
    parser.add_argument("--echo", choices=("turns", "frames"), default="turns")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")


async def _serve(args: argparse.Namespace) -> None:
    from clutchcall.prod.ingress.auth import resolve_auth_key
    from clutchcall.prod.ingress.call import EchoHandler
    from clutchcall.prod.ingress.config import IngressConfig
    from clutchcall.prod.ingress.quic import QuicIngress
    from clutchcall.prod.ingress.ws import WsIngress

    cfg = IngressConfig(host=args.host, quic_port=args.quic_port, ws_port=args.ws_port, cert=args.cert,
                        key=args.key, cert_dir=args.cert_dir,
                        auth_key=resolve_auth_key(args.host))
    handler = EchoHandler(turn_silence_ms=None if args.echo == "frames" else 400)
    quic, ws = QuicIngress(cfg, handler), WsIngress(cfg, handler)
    qport, wport = await quic.start(), await ws.start()
    print(json.dumps({
        "quic": f"{args.host}:{qport}", "ws": f"wss://{args.host}:{wport}/media", "cert": quic.cert_path,
        "call_id": args.call_id, "token": quic.authority.issue(args.call_id, time.time() + args.token_ttl),
    }), flush=True)
    try:
        await asyncio.sleep(args.duration if args.duration else 1e9)
    finally:
        await quic.stop(goaway_grace_s=0.2)
        await ws.stop()
        print(json.dumps({"quic_stats": dict(quic.stats), "ws_stats": dict(ws.stats)}), flush=True)


def run(args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0
