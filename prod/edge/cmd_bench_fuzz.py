"""``clutchcall bench fuzz``: a bounded, seeded fuzz of a real ``serve`` on loopback.

Theory of operation: starts ``clutchcall serve`` as a child process (the same
:class:`~clutchcall.prod.edge.served.ServedEdge` as ``bench hostile``), then runs ``--cases``
cases of each family, every case on its own connection, all generated from ``--seed`` (a
failure names its family, case number and input so it can be replayed):

* ``ws-json``: a Twilio Media Streams session over WebSocket/TLS whose messages are mutated --
  before ``start`` (random bytes, JSON of the wrong type, unknown events, ``start`` with
  broken fields) or after a valid ``start`` (bad base64, odd chunk numbers and timestamps,
  oversized payloads, marks echoing audio never sent, unknown events, garbage after
  ``stop``);
* ``ws-token`` / ``moqt-token``: a ``start`` / CLIENT_SETUP whose token is a mutation of a
  valid one (bit flips, truncation, extension, a swapped field, non-ASCII bytes);
* ``moqt-control``: a MoQT control stream of a valid CLIENT_SETUP mutated (bit flips,
  truncation, random insertions) or followed by random bytes;
* ``moqt-data``: a valid setup (real token) followed by a unidirectional data stream and QUIC
  DATAGRAM frames (MoQT object datagrams) of random or mutated bytes;
* ``udp``: raw UDP datagrams of random length and first byte at the QUIC port.

A case *fails* when the edge shows a bug rather than a typed refusal: WebSocket close 1011
(an unhandled exception), MoQT INTERNAL_ERROR, a mutated token that is accepted although it
decodes to other fields than the original (a WebSocket call that stays open, a MoQT session
not closed 2 s after its setup), or the process exiting. Typed refusals (1003, 1007,
1008, 1009, MoQT termination codes) and a session still open when the case's time is up are
outcomes, counted per family. After the cases a real call is placed on each transport and must
complete, and the served edge's own counters must show no handler error and no internal error.
Everything is bounded in count (``--cases`` <= 500 per family) and time (``--budget-s``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import secrets
import ssl
import sys
import time
from collections import Counter
from typing import Any

from clutchcall.prod.edge.served import ServedEdge

FAMILIES = ("ws-json", "ws-token", "moqt-token", "moqt-control", "moqt-data", "udp")
WS_TYPED = {1000, 1003, 1007, 1008, 1009, 1013}  # a typed close, not a bug


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    parser.add_argument("--cases", type=int, default=40, help="cases per family (default 40)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget-s", type=float, default=120.0, help="time bound for all cases")
    parser.add_argument("--edge-pythonpath", default=None)
    parser.add_argument("--json", action="store_true")


# ------------------------------------------------------------------------- mutations
def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    """Return ``data`` with one random mutation: bit flips, truncation, insertion, or a
    duplicated slice."""
    b = bytearray(data)
    op = rng.randrange(4)
    if op == 0 and b:
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif op == 1 and b:
        del b[rng.randrange(len(b)):]
    elif op == 2:
        i = rng.randrange(len(b) + 1)
        b[i:i] = rng.randbytes(rng.randint(1, 16))
    elif b:
        i = rng.randrange(len(b))
        b[i:i] = b[i:i + rng.randint(1, 32)] * rng.randint(2, 8)
    return bytes(b)


def mutate_token(rng: random.Random, token: str) -> str | bytes:
    """Return a mutation of a valid token (module docstring)."""
    op = rng.randrange(5)
    if op == 0:
        return mutate_bytes(rng, token.encode()).decode("latin-1")
    if op == 1:
        return token[: rng.randrange(len(token))]
    if op == 2:
        return token + rng.choice([".", "=", "A", ".v1", "\x00"]) * rng.randint(1, 3)
    if op == 3:
        parts = token.split(".")
        i, j = rng.sample(range(len(parts)), 2)
        parts[i], parts[j] = parts[j], parts[i]
        return ".".join(parts)
    return token.encode() + bytes([rng.randrange(128, 256)])


def same_token_fields(a: str | bytes, b: str) -> bool:
    """Return True if token ``a`` decodes to the same call id, expiry and signature bytes as
    ``b`` (base64 may ignore a final character's spare bits: such a mutation is the same
    token)."""
    def fields(t: str) -> tuple[bytes, int, bytes] | None:
        p = t.split(".")
        if len(p) != 4 or p[0] != "v1":
            return None
        try:
            return (base64.urlsafe_b64decode(p[1] + "=" * (-len(p[1]) % 4)), int(p[2]),
                    base64.urlsafe_b64decode(p[3] + "=" * (-len(p[3]) % 4)))
        except ValueError:
            return None

    ta = a.decode("latin-1") if isinstance(a, bytes) else a
    fa = fields(ta)
    return fa is not None and fa == fields(b)


def _start(token: Any, sid: str = "MZfuzz") -> dict[str, Any]:
    return {"event": "start", "streamSid": sid, "start": {
        "streamSid": sid, "customParameters": {"token": token},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}


def _media(chunk: Any, ts: Any, payload: Any) -> dict[str, Any]:
    return {"event": "media", "media": {"chunk": chunk, "timestamp": ts, "payload": payload}}


def ws_messages(rng: random.Random, token: str) -> list[str | bytes]:
    """Return one ws-json case: the messages to send (module docstring)."""
    good = base64.b64encode(b"\xff" * 160).decode()
    junk: list[Any] = [rng.randbytes(rng.randint(0, 64)), "[]", "null", "42", '"start"', "{",
                       json.dumps({"event": rng.choice(["", "START", "media", "mark", "stop", 7])}),
                       json.dumps({"event": "start", "start": rng.choice([None, [], "x", 1])}),
                       json.dumps({"event": "start", "start": {"mediaFormat": rng.choice(
                           [None, "x", {"encoding": "audio/x-mulaw", "sampleRate": "eight"},
                            {"encoding": "audio/l16", "sampleRate": 8000}])}}),
                       json.dumps(_start(rng.choice([None, 1, [], {"a": 1}, "x" * 5000]))),
                       "x" * rng.choice([10, 70_000])]
    if rng.random() < 0.4:
        return [rng.choice(junk) for _ in range(rng.randint(1, 3))]
    msgs: list[str | bytes] = [json.dumps(_start(token))]
    chunk = 1
    for _ in range(rng.randint(1, 12)):
        r = rng.randrange(12)
        if r < 4:  # a good frame
            msgs.append(json.dumps(_media(str(chunk), str(20 * (chunk - 1)), good)))
            chunk += 1
        elif r == 4:
            msgs.append(json.dumps(_media(str(chunk), "0", rng.choice(
                ["%%%", "QQ", base64.b64encode(rng.randbytes(rng.choice([0, 3, 2000]))).decode(),
                 None, 5]))))
        elif r == 5:
            msgs.append(json.dumps(_media(rng.choice(["-5", "0", "x", "1e9", None, 2**70, "1"]),
                                          rng.choice(["-1", "x", None, str(2**63)]), good)))
        elif r == 6:
            msgs.append(json.dumps({"event": "mark", "mark": {"name": rng.choice(
                ["p99999", "p0", "p", "ctl:x", 5, None, "p" + "9" * 40])}}))
        elif r == 7:
            msgs.append(json.dumps({"event": rng.choice(["media", "mark", "dtmf", "clear", "bogus"]),
                                    "media": rng.choice([None, [], {}, "x"]), "mark": rng.choice([None, 1])}))
        elif r == 8:
            msgs.append(mutate_bytes(rng, json.dumps(_media(str(chunk), "0", good)).encode()))
        elif r == 9:
            msgs.append(json.dumps({"event": "stop"}))
        elif r == 10:
            msgs.append(rng.randbytes(rng.randint(1, 200)))
        else:
            msgs.append(json.dumps(_start(token)))  # a second start
    return msgs


# ------------------------------------------------------------------------- the cases
class Fuzzer:
    """Runs the families against a served edge (module docstring)."""

    def __init__(self, ready: dict[str, Any], seed: int, cases: int, budget_s: float) -> None:
        self.ready = ready
        self.rng = random.Random(seed)
        self.cases = cases
        self.deadline = time.monotonic() + budget_s
        self.outcomes: dict[str, Counter[str]] = {f: Counter() for f in FAMILIES}
        self.failures: list[dict[str, Any]] = []
        self.tokens = [t for c, t in sorted(ready["tokens"].items()) if c.startswith("fuzz-")]
        self._tok = 0
        self.ssl = ssl.create_default_context(cafile=ready["cert"])

    def token(self) -> str:
        """Return the next call id's token (cycled; a call id is free again once its call ended)."""
        self._tok += 1
        return self.tokens[self._tok % len(self.tokens)]

    def fail(self, family: str, case: int, what: str, data: Any) -> None:
        self.failures.append({"family": family, "case": case, "what": what, "input": repr(data)[:300]})

    async def ws_case(self, msgs: list[str | bytes], timeout_s: float = 2.0) -> int | None:
        """Send ``msgs`` on one WebSocket; return the edge's close code (None: still open)."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        uri = f"wss://localhost:{self.ready['ws_port']}/media"
        try:
            async with connect(uri, ssl=self.ssl, max_size=1 << 20) as ws:
                for m in msgs:
                    await ws.send(m)
                end = time.monotonic() + timeout_s
                while time.monotonic() < end:
                    await asyncio.wait_for(ws.recv(), end - time.monotonic())
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
        except TimeoutError:
            return None
        return None

    async def run_ws_json(self) -> None:
        for i in range(self.cases):
            if time.monotonic() > self.deadline:
                return
            msgs = ws_messages(self.rng, self.token())
            code = await self.ws_case(msgs, timeout_s=0.5)
            self.outcomes["ws-json"][str(code)] += 1
            if code is not None and code not in WS_TYPED:
                self.fail("ws-json", i, f"close code {code}", msgs)

    async def run_ws_token(self) -> None:
        for i in range(self.cases):
            if time.monotonic() > self.deadline:
                return
            good = self.token()
            bad = mutate_token(self.rng, good)
            sent = bad.decode("latin-1") if isinstance(bad, bytes) else bad
            code = await self.ws_case([json.dumps(_start(sent))], timeout_s=0.3)
            self.outcomes["ws-token"][str(code)] += 1
            accepted = code is None  # the call started and stayed open
            if accepted and not same_token_fields(sent, good):
                self.fail("ws-token", i, "mutated token accepted", sent)
            elif code is not None and code not in WS_TYPED:
                self.fail("ws-token", i, f"close code {code}", sent)

    async def quic_case(self, control: bytes, data: bytes | None = None,
                        datagrams: list[bytes] | None = None, timeout_s: float = 1.0) -> int | None:
        """One MoQT session (raw control bytes, optional data stream and datagrams); return the
        edge's close code (None: still open)."""
        from aioquic.asyncio import connect
        from aioquic.quic.configuration import QuicConfiguration

        from clutchcall.prod.caller.rawmoqt import _Probe
        from clutchcall.prod.moqt.wire import MOQT_ALPN

        qc = QuicConfiguration(is_client=True, alpn_protocols=[MOQT_ALPN], server_name="localhost",
                               max_datagram_frame_size=65536)
        qc.verify_mode = ssl.CERT_NONE
        async with connect("127.0.0.1", self.ready["quic_port"], configuration=qc,
                           create_protocol=_Probe) as p:
            assert isinstance(p, _Probe)
            q = p._quic
            q.send_stream_data(q.get_next_available_stream_id(), control)
            p.transmit()
            if data is not None or datagrams:
                await asyncio.sleep(0.05)
            if data is not None:
                q.send_stream_data(q.get_next_available_stream_id(is_unidirectional=True), data,
                                   end_stream=True)
            for d in datagrams or []:
                q.send_datagram_frame(d)
            p.transmit()
            try:
                await asyncio.wait_for(p.closed.wait(), timeout_s)
            except TimeoutError:
                return None
            return p.code

    async def _quic_outcome(self, family: str, i: int, case: Any, **kw: Any) -> int | None:
        """Run one QUIC case; return the edge's close code, None if the session stayed open,
        -1 if no session came up (counted by exception type)."""
        from clutchcall.prod.moqt.wire import TerminationCode

        try:
            code = await self.quic_case(**kw)
        except (ConnectionError, OSError, TimeoutError) as exc:  # no session: an outcome
            self.outcomes[family][type(exc).__name__] += 1
            return -1
        self.outcomes[family][str(code)] += 1
        if code == TerminationCode.INTERNAL_ERROR:
            self.fail(family, i, "MoQT INTERNAL_ERROR", case)
        return code

    async def run_moqt(self) -> None:
        from clutchcall.prod.caller.rawmoqt import setup_with_token

        for i in range(self.cases):
            if time.monotonic() > self.deadline:
                return
            good = self.token()
            # moqt-token
            bad = mutate_token(self.rng, good)
            raw = bad if isinstance(bad, bytes) else bad.encode("latin-1")
            code = await self._quic_outcome("moqt-token", i, raw, control=setup_with_token(raw),
                                            timeout_s=2.0)
            if code is None and not same_token_fields(raw, good):
                # still open 2 s after a setup with a mutated token: it was not refused
                self.fail("moqt-token", i, "mutated token not refused", raw)
            # moqt-control
            setup = setup_with_token(good.encode())
            ctl = (mutate_bytes(self.rng, setup) if self.rng.random() < 0.7
                   else setup + self.rng.randbytes(self.rng.randint(1, 300)))
            await self._quic_outcome("moqt-control", i, ctl, control=ctl, timeout_s=0.5)
            # moqt-data: a valid setup, then random objects on a data stream and in datagrams
            obj = self.rng.choice([self.rng.randbytes(self.rng.randint(0, 200)),
                                   mutate_bytes(self.rng, bytes([0x04, 0x00, 0x01, 0x00, 0x00, 0x05]) + b"hello")])
            dgs = [self.rng.randbytes(self.rng.randint(1, 120)) for _ in range(self.rng.randint(0, 4))]
            await self._quic_outcome("moqt-data", i, (obj, dgs), control=self.rng.choice(
                [setup, setup_with_token(self.token().encode())]), data=obj, datagrams=dgs,
                timeout_s=0.5)

    async def run_udp(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=("127.0.0.1", self.ready["quic_port"]))
        try:
            for _ in range(self.cases * 5):
                first = self.rng.choice([0xC0, 0xC3, 0x40, 0x00, self.rng.randrange(256)])
                n = self.rng.choice([0, 1, 20, 1200, 1500, self.rng.randint(1, 1400)])
                transport.sendto(bytes([first]) + self.rng.randbytes(n))
                self.outcomes["udp"]["sent"] += 1
                await asyncio.sleep(0)
        finally:
            transport.close()

    async def legit_calls(self) -> dict[str, Any]:
        """One real call per transport after the fuzz; returns their results."""
        from clutchcall.prod.caller.client import Caller
        from clutchcall.prod.caller.quic_transport import QuicCallerTransport
        from clutchcall.prod.caller.speech import synth
        from clutchcall.prod.caller.ws_transport import WsCallerTransport

        r = self.ready
        out: dict[str, Any] = {}
        for name in ("quic", "ws"):
            cid = f"after-{name}"
            tok = r["tokens"][cid]
            if name == "quic":
                codec, rate = "pcm16", 16000
                tr: Any = QuicCallerTransport("127.0.0.1", r["quic_port"], token=tok, call_id=cid,
                                              codec=codec, rate=rate, cafile=r["cert"], timeout_s=10)
            else:
                codec, rate = "g711_ulaw", 8000
                tr = WsCallerTransport(f"wss://localhost:{r['ws_port']}/media", token=tok,
                                       call_id=cid, cafile=r["cert"])
            pcm = bytes(rate // 5) + synth("Hello, is my order on the way?", rate) + bytes(rate * 4)
            res = await Caller(tr, call_id=cid, codec=codec, rate=rate, tail_s=0.5).run(pcm)
            out[name] = {"frames_sent": res.frames_sent, "agent_frames": res.agent_frames_received}
        return out


async def fuzz(edge: ServedEdge, seed: int, cases: int, budget_s: float) -> dict[str, Any]:
    """Run every family, then the after-calls; return outcomes, failures and the calls."""
    fz = Fuzzer(edge.ready, seed, cases, budget_s)
    t0 = time.monotonic()
    await fz.run_ws_json()
    await fz.run_ws_token()
    await fz.run_moqt()
    await fz.run_udp()
    await asyncio.sleep(0.5)
    alive = edge.proc.poll() is None
    after = await asyncio.wait_for(fz.legit_calls(), 60) if alive else {}
    return {"seed": seed, "cases_per_family": cases, "wall_s": round(time.monotonic() - t0, 1),
            "outcomes": {f: dict(c) for f, c in fz.outcomes.items()}, "failures": fz.failures,
            "alive": alive, "after_calls": after}


def run_fuzz(cases: int, seed: int, budget_s: float = 120.0,
             edge_pythonpath: str | None = None) -> dict[str, Any]:
    """Serve, fuzz, stop; return the report (module docstring). A bug shows up in
    ``failures``, ``alive`` false, or ``edge_errors`` (the served edge's handler / internal
    error counters). Raises ValueError for out-of-range arguments."""
    if not 1 <= cases <= 500 or not 1 <= budget_s <= 3600:
        raise ValueError("--cases 1..500, --budget-s 1..3600")
    n_tokens = min(cases, 20)
    edge = ServedEdge(edge_pythonpath, extra=["--call-id", "fuzz", "--tokens", str(n_tokens),
                                              "--idle-timeout", "5"],
                      auth_key=secrets.token_hex(24))
    try:
        edge.ready["tokens"].update({c: edge.issue_token(c) for c in ("after-quic", "after-ws")})
        res = asyncio.run(fuzz(edge, seed, cases, budget_s))
    finally:
        stopped = edge.stop()
    counters = {**{f"quic_{k}": v for k, v in stopped.get("quic", {}).items()},
                **{f"ws_{k}": v for k, v in stopped.get("ws", {}).items()}}
    res["edge_errors"] = {k: v for k, v in counters.items()
                          if ("handler_errors" in k or "INTERNAL_ERROR" in k) and v}
    res["edge_counters"] = counters
    return res


def run(args: argparse.Namespace) -> int:
    """Run the fuzz; print the report; exit 1 if the edge showed a bug."""
    try:
        res = run_fuzz(args.cases, args.seed, args.budget_s, args.edge_pythonpath)
    except ValueError as exc:
        print(f"clutchcall bench fuzz: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(res) if args.json else json.dumps(res, indent=1))
    bad = res["failures"] or not res["alive"] or res["edge_errors"]
    return 1 if bad else 0
