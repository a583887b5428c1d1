"""``clutchcall bench callerleg``: caller-leg benchmarks on loopback.

1. MoQT codec: encode + parse of one-object subgroup streams (a 20 ms pcm16/16 kHz frame each),
   median over repeats, as objects/s and us/object; baseline in the same process: aiomoqt
   0.5.3's classes parsing the same bytes (if installed), reported as a ratio.
2. Calls: ``--calls`` sequential calls per transport (QUIC/MoQT and WebSocket/TLS) against an
   in-process edge with the turn-echo handler; reports median connect time and median
   mouth-to-ear turn latency per transport and the QUIC / WS ratio, plus QUIC reconnects that
   resume with a session ticket (0-RTT): median connect time vs a full handshake. The
   ``webtransport`` row is the browser's transport (MoQT inside an HTTP/3 WebTransport session,
   aioquic's client standing in for the browser), pcm16/16 kHz like QUIC. On loopback with no loss
   this measures software overhead, not the network (no head-of-line blocking to show).
3. ``--browser``: a ``browser`` row, the real browser caller: the edge's page in headless
   Chromium (Debian's ``/usr/bin/chromium`` driven by Playwright, the same dialogue as its fake
   microphone at 48 kHz, Opus via WebCodecs) against the same turn-echo edge over WebTransport;
   mouth-to-ear by the Python caller's definition (webrtcvad turn ends on the audio the page
   captured, the page's own capture and arrival times; the page's energy-VAD figure is
   ``page_mouth_to_ear_ms_median``, see :mod:`clutchcall.prod.caller.browser`), its ratio to
   the QUIC row of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--objects", type=int, default=20000, help="objects per codec repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3, help="calls per transport")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--browser", action="store_true",
                        help="add a row for the real browser caller (headless Chromium; needs /usr/bin/chromium "
                             "and playwright)")


def bench_codec(n: int, repeats: int) -> dict[str, Any]:
    from clutchcall.prod.moqt.session import MoqtSession
    from clutchcall.prod.moqt.wire import SubgroupStreamParser

    payload = bytes(640)
    mine, theirs = [], []
    streams = [MoqtSession.encode_object_stream(3, g, payload) for g in range(n)]
    for _ in range(repeats):
        t = time.perf_counter()
        for g in range(n):
            raw = MoqtSession.encode_object_stream(3, g, payload)
            objs = SubgroupStreamParser().feed(raw, fin=True)
            assert objs[0].group_id == g
        mine.append((time.perf_counter() - t) / n)
        try:
            from aiomoqt.messages import ObjectHeader, SubgroupHeader
            from aiomoqt.utils.buffer import Buffer
        except ImportError:
            continue
        t = time.perf_counter()
        for raw in streams:
            buf = Buffer(data=raw)
            h = SubgroupHeader.deserialize(buf, buf.pull_uint_var())
            ObjectHeader.deserialize(buf, len(raw), extensions_present=h.extensions_present)
        theirs.append((time.perf_counter() - t) / n)
    t = time.perf_counter()
    for raw in streams:
        SubgroupStreamParser().feed(raw, fin=True)
    parse_only = (time.perf_counter() - t) / n
    out: dict[str, Any] = {
        "objects": n, "repeats": repeats,
        "encode_parse_us_per_object_median": round(statistics.median(mine) * 1e6, 2),
        "encode_parse_objects_per_s_median": round(1 / statistics.median(mine)),
        "parse_only_us_per_object": round(parse_only * 1e6, 2),
    }
    if theirs:
        out["aiomoqt_parse_us_per_object_median"] = round(statistics.median(theirs) * 1e6, 2)
        out["parse_ratio_clutchcall_vs_aiomoqt"] = round(parse_only / statistics.median(theirs), 2)
    return out


async def bench_calls(calls: int) -> dict[str, Any]:
    from clutchcall.prod.caller.client import Caller
    from clutchcall.prod.caller.quic_transport import QuicCallerTransport
    from clutchcall.prod.caller.speech import dialogue
    from clutchcall.prod.caller.ws_transport import WsCallerTransport
    from clutchcall.prod.ingress.call import EchoHandler
    from clutchcall.prod.ingress.config import IngressConfig
    from clutchcall.prod.ingress.quic import QuicIngress
    from clutchcall.prod.ingress.ws import WsIngress

    cfg = IngressConfig(cert_dir=tempfile.mkdtemp(prefix="clutchcall-bench-"))
    texts = ["hello there", "how are you today"]
    pcm = {16000: dialogue(texts, 16000, gap_s=0.7), 8000: dialogue(texts, 8000, gap_s=0.7)}
    res: dict[str, Any] = {}
    from clutchcall.prod.caller.webtransport_client import WebTransportCallerTransport
    from clutchcall.prod.ingress.webtransport import WebTransportIngress

    kinds: dict[str, Any] = {"quic": QuicIngress, "ws": WsIngress, "webtransport": WebTransportIngress}
    for name in ("quic", "ws", "webtransport"):
        edge: Any = kinds[name](cfg, EchoHandler(turn_silence_ms=400))
        port = await edge.start()
        lat, conn, conn0 = [], [], []
        tickets: list[Any] = []
        for i in range(calls):
            cid = f"bench-{name}-{i}"
            tok = edge.authority.issue(cid, time.time() + 600)
            if name == "quic":
                tr: Any = QuicCallerTransport("127.0.0.1", port, token=tok, call_id=cid, codec="pcm16", rate=16000,
                                              cafile=edge.cert_path, ticket_sink=tickets.append)
                r = await Caller(tr, call_id=cid, codec="pcm16", rate=16000, tail_s=1.0).run(pcm[16000])
            elif name == "webtransport":
                tr = WebTransportCallerTransport("127.0.0.1", port, token=tok, call_id=cid, codec="pcm16",
                                                 rate=16000, cafile=edge.cert_path)
                r = await Caller(tr, call_id=cid, codec="pcm16", rate=16000, tail_s=1.0).run(pcm[16000])
            else:
                tr = WsCallerTransport(f"wss://localhost:{port}/m", token=tok, call_id=cid, cafile=edge.cert_path)
                r = await Caller(tr, call_id=cid, codec="g711_ulaw", rate=8000, tail_s=1.0).run(pcm[8000])
            lat += [t.latency_ms for t in r.turns if t.latency_ms is not None]
            conn.append(r.connect_ms)
        if name == "quic":  # reconnects resuming with a session ticket, setup sent as 0-RTT
            for i in range(calls):
                cid = f"bench-0rtt-{i}"
                tok = edge.authority.issue(cid, time.time() + 600)
                tr = QuicCallerTransport("127.0.0.1", port, token=tok, call_id=cid, codec="pcm16", rate=16000,
                                         cafile=edge.cert_path, session_ticket=tickets[-1] if tickets else None,
                                         ticket_sink=tickets.append)
                r = await Caller(tr, call_id=cid, codec="pcm16", rate=16000, tail_s=0.1).run(bytes(640 * 10))
                if r.early_data_accepted:
                    conn0.append(r.connect_ms)
        await edge.stop()
        res[name] = {"calls": calls, "turns": len(lat),
                     "connect_ms_median": round(statistics.median(conn), 2),
                     **({"connect_ms_median_0rtt": round(statistics.median(conn0), 2),
                         "connect_ratio_0rtt_vs_full": round(statistics.median(conn0) / statistics.median(conn), 3)}
                        if conn0 else {}),
                     "mouth_to_ear_ms_median": round(statistics.median(lat), 2) if lat else None}
    q, w = res["quic"]["mouth_to_ear_ms_median"], res["ws"]["mouth_to_ear_ms_median"]
    if q and w:
        res["mouth_to_ear_ratio_quic_vs_ws"] = round(q / w, 3)
    wt = res["webtransport"]["mouth_to_ear_ms_median"]
    if q and wt:
        res["mouth_to_ear_ratio_webtransport_vs_quic"] = round(wt / q, 3)
    res["note"] = "turn echo replays after 400 ms of caller silence; QUIC adds its 40 ms jitter buffer"
    return res


async def bench_browser(calls: int) -> dict[str, Any]:
    """The ``browser`` row: ``calls`` calls from the page in headless Chromium to a turn-echo
    edge (WebTransport ingress + page server, :func:`clutchcall.prod.caller.browser.echo_web_edge`),
    speaking the same dialogue as the other rows. Returns the row (medians over all turns)."""
    import numpy as np

    from clutchcall.prod.caller.browser import browser_call, echo_web_edge
    from clutchcall.prod.caller.speech import dialogue
    from clutchcall.prod.ingress.call import EchoHandler
    from clutchcall.prod.ingress.config import IngressConfig
    from clutchcall.prod.ingress.tls import cert_sha256
    from clutchcall.prod.web.server import page_url

    cfg = IngressConfig(cert_dir=tempfile.mkdtemp(prefix="clutchcall-bench-"))
    pcm = np.frombuffer(dialogue(["hello there", "how are you today"], 16000, gap_s=0.7), dtype="<i2")
    edge = echo_web_edge(cfg, EchoHandler(turn_silence_ms=400), page=True)
    port = await edge.start()
    lat: list[float] = []
    page: list[float] = []
    conn: list[float] = []
    codec = None
    try:
        with tempfile.TemporaryDirectory(prefix="clutchcall-bench-browser-") as tmp:
            for i in range(calls):
                cid = f"bench-browser-{i}"
                url = page_url("127.0.0.1", port, call_id=cid, token=edge.authority.issue(cid, time.time() + 600),
                               cert_hash=cert_sha256(edge.cert_path))
                r = await asyncio.to_thread(browser_call, url, pcm, 16000, workdir=tmp, tail_s=1.0)
                lat += [t["mouth_to_ear_ms"] for t in r["turns"] if t["mouth_to_ear_ms"] is not None]
                page += [t["page_mouth_to_ear_ms"] for t in r["page_turns"] if t["page_mouth_to_ear_ms"] is not None]
                conn.append(r["connect_ms"])
                codec = f"{r['codec']}/{r['rate']}"
    finally:
        await edge.stop()
    return {"calls": calls, "turns": len(lat), "codec": codec,
            "connect_ms_median": round(statistics.median(conn), 2) if conn else None,
            "mouth_to_ear_ms_median": round(statistics.median(lat), 2) if lat else None,
            "page_mouth_to_ear_ms_median": round(statistics.median(page), 2) if page else None}


def run(args: argparse.Namespace) -> int:
    out = {"codec": bench_codec(args.objects, args.repeats), "calls": asyncio.run(bench_calls(args.calls))}
    if args.browser:
        row = asyncio.run(bench_browser(args.calls))
        out["calls"]["browser"] = row
        q = out["calls"]["quic"]["mouth_to_ear_ms_median"]
        if q and row["mouth_to_ear_ms_median"]:
            out["calls"]["mouth_to_ear_ratio_browser_vs_quic"] = round(row["mouth_to_ear_ms_median"] / q, 3)
    print(json.dumps(out, indent=2))
    return 0
