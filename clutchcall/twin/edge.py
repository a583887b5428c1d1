"""The real edge of the twin check, run as a process in the emulator's edge namespace.

Theory of operation: :func:`serve_edge` (run through :mod:`clutchcall.netem.runner`) starts
the embedded reference model on loopback (its time to first audio is the one the simulator is
told), then the QUIC/MoQT and WebSocket/TLS ingresses with the production call handler,
:class:`~clutchcall.prod.edge.handler.EdgeHandler` (the same per-call pipeline, idle watchdog
and call summaries as ``clutchcall serve``; no traces are written) -- binds them on all addresses of the namespace, issues one token per call id it is
given, and prints its ready line with the ports, the certificate and the tokens. When the
harness stops it (SIGTERM sets ``stop``) it shuts the ingresses down and returns every call's
:class:`~clutchcall.prod.pipeline.TurnRecord` list (as dicts) and the ingress counters.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from typing import Any

from clutchcall.netem.runner import signal_ready


async def serve_edge(*, call_ids: list[str], ttfa_ms: int = 300, quic_port: int = 4433,
                     ws_port: int = 8443, cert_dir: str | None = None, auth_key: str | None = None,
                     max_s: float = 300.0, stop: asyncio.Event) -> dict[str, Any]:
    """Serve until ``stop`` is set (or ``max_s`` passes); return ``{"turns": {call_id:
    [TurnRecord dict]}, "quic_stats", "ws_stats", "model"}``. Raises OSError on bind."""
    from clutchcall.prod.edge.handler import EdgeHandler
    from clutchcall.prod.ingress.config import IngressConfig
    from clutchcall.prod.ingress.quic import QuicIngress
    from clutchcall.prod.ingress.ws import WsIngress
    from clutchcall.prod.model.client import ModelLegConfig
    from clutchcall.prod.model.server import ModelServerConfig, ReferenceModelServer

    logging.basicConfig(level=logging.WARNING)
    model = ReferenceModelServer(ModelServerConfig(time_to_first_audio_ms=ttfa_ms))
    url = await model.start()
    kw: dict[str, Any] = {"auth_key": auth_key.encode()} if auth_key else {}
    cfg = IngressConfig(host="0.0.0.0", quic_port=quic_port, ws_port=ws_port,
                        cert_dir=cert_dir or tempfile.mkdtemp(prefix="clutchcall-twin-tls-"),
                        **kw)
    handlers = {name: EdgeHandler(model_url=url, model_config=ModelLegConfig(url=url))
                for name in ("quic", "ws")}
    quic = QuicIngress(cfg, handlers["quic"])
    ws = WsIngress(cfg, handlers["ws"], authority=quic.authority)
    qport, wport = await quic.start(), await ws.start()
    exp = time.time() + 3600
    signal_ready(quic_port=qport, ws_port=wport, cert=quic.cert_path,
                 tokens={c: quic.authority.issue(c, exp) for c in call_ids})
    try:
        await asyncio.wait_for(stop.wait(), max_s)
    except TimeoutError:
        pass
    # let pipelines still draining a reply finish and record their turns (bounded)
    until = asyncio.get_running_loop().time() + 3.0
    while any(h.pipelines for h in handlers.values()) and asyncio.get_running_loop().time() < until:
        await asyncio.sleep(0.05)
    await quic.stop()
    await ws.stop()
    await model.close()
    turns: dict[str, list[dict[str, Any]]] = {}
    for h in handlers.values():
        for cid, summary in h.calls.items():
            turns[cid] = [r.to_dict() for r in summary.turns]
        for cid, pipe in h.pipelines.items():  # still running after the grace: what it has
            if not turns.get(cid):
                turns[cid] = [r.to_dict() for r in pipe.turns]
    return {"turns": turns, "quic_stats": dict(quic.stats), "ws_stats": dict(ws.stats),
            "model": {"responses": model.stats.responses, "cancelled": model.stats.cancelled}}
