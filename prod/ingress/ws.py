"""WebSocket ingress over TLS, speaking Twilio Media Streams.

Theory of operation
-------------------
A PSTN leg (Twilio ``<Stream>``) or any client without QUIC connects with WebSocket over TLS
(TCP). The peer sends, as JSON text frames, ``connected``, then ``start`` (with
``streamSid``, ``mediaFormat`` = audio/x-mulaw, 8000 Hz, 1 channel, and
``customParameters.token``; a ``?token=`` query parameter is also accepted), then ``media``
messages (base64 G.711 µ-law, 20 ms each, ``chunk`` numbering from 1 and ``timestamp`` in ms),
``mark`` and finally ``stop``. The edge sends ``media`` (agent audio), ``clear``
(clear-playout) and ``mark`` messages with short names.

Marks (Twilio echoes a mark once the audio sent before it has played, and echoes every pending
mark at once after a ``clear``): every :data:`MARK_EVERY_FRAMES` agent frames, and after the
last frame of a burst, the edge sends ``mark`` ``p<N>`` (N = agent frames sent so far on the
call). An echo of ``p<N>`` confirms N frames played; after a ``clear`` the echoes of marks sent
before it confirm nothing (the audio was dropped, not played), so the count jumps to what was
sent. :meth:`WsCall.unconfirmed_ms` is the agent audio sent but not yet confirmed played: the
pipeline's played-time on cancel (the truncation point told to the model) is what was sent of
the item minus that.

The played position, for anything that decides on agent audio the phone has buffered (soft
barge-in: duck / pause must account for audio Twilio already holds), is read from the call
object -- or from the pipeline's ``CallSessionDownlink``, which passes these through and gives
None on transports that do not confirm playback:

* ``call.played_ms`` -- agent audio (ms) Twilio confirmed played, cumulative (a lower bound:
  at most one mark interval behind now, plus at most one per ``clear``; audio dropped by
  ``clear`` never counts);
* ``call.sent_ms`` -- agent audio (ms) sent, cumulative;
* ``call.unconfirmed_ms()`` -- ``sent`` minus confirmed: what Twilio still buffers now
  (0 right after a ``clear``);
* ``call.last_confirmed_at`` -- loop time of the latest confirming echo (to extrapolate). Other control events ride as marks named ``ctl:<type>`` (errors:
``ctl:error:<code>``); their echoes are ignored.

After a valid ``start`` with an accepted token, a :class:`WsCall` (the same
:class:`~clutchcall.prod.ingress.call.CallSession` interface as QUIC) goes to the handler.
TCP delivers in order, so the jitter buffer runs with depth 0 (it still counts gaps Twilio
reports through ``chunk`` numbers). Anything that is not the protocol's JSON, bad base64, an
unknown event, a wrong media format or a refused token closes that connection with a clear
WebSocket close code (1007 bad data, 1008 policy/auth, 1003 unsupported format) and reason,
and is counted; other calls are untouched.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import socket
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from clutchcall.engine.errors import RemoteProtocolError
from clutchcall.prod.ingress.admission import (
    PendingGate,
    gated_listener,
    release_connection,
    shrink_tls_read_buffer,
)
from clutchcall.prod.ingress.auth import AuthError, TokenAuthority
from clutchcall.prod.ingress.call import BaseCall, CallHandler
from clutchcall.prod.ingress.config import IngressConfig
from clutchcall.prod.ingress.tls import ensure_self_signed, server_ssl_context

log = logging.getLogger("clutchcall.ingress.ws")

MAX_MESSAGE_BYTES = 64 * 1024
MAX_MEDIA_BYTES = 1600  # 200 ms of µ-law 8 kHz
MARK_EVERY_FRAMES = 5  # a played-position mark every 100 ms of agent audio
MARK_IDLE_S = 0.06  # ... and one after the last frame of a burst (no frame for this long)


class WsProtocolError(RemoteProtocolError):
    """The peer broke the Twilio Media Streams protocol; ``close_code`` is the WebSocket code."""

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(reason)
        self.close_code = close_code
        self.reason = reason


def parse_message(raw: str | bytes) -> dict[str, Any]:
    """Parse one Twilio Media Streams message; raises WsProtocolError (1003/1007)."""
    if isinstance(raw, bytes):
        raise WsProtocolError(1003, "binary frames are not part of the protocol (expected JSON text)")
    try:
        msg = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise WsProtocolError(1007, f"bad JSON: {exc.msg} at {exc.pos}") from None
    except RecursionError:
        raise WsProtocolError(1007, "bad JSON: nested too deeply") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("event"), str):
        raise WsProtocolError(1007, "message must be a JSON object with an 'event' string")
    return msg


def decode_media(msg: dict[str, Any]) -> tuple[int, int, bytes]:
    """Return (chunk, timestamp_ms, µ-law payload) of a media message; raises WsProtocolError."""
    media = msg.get("media")
    if not isinstance(media, dict) or not isinstance(media.get("payload"), str):
        raise WsProtocolError(1007, "media message without media.payload")
    try:
        payload = base64.b64decode(media["payload"], validate=True)
    except (binascii.Error, ValueError):
        raise WsProtocolError(1007, "media.payload is not valid base64") from None
    if not payload or len(payload) > MAX_MEDIA_BYTES:
        raise WsProtocolError(1007, f"media payload of {len(payload)} bytes (1..{MAX_MEDIA_BYTES})")
    try:
        chunk = int(media.get("chunk", 0))
        ts = int(media.get("timestamp", 0))
    except (TypeError, ValueError):
        raise WsProtocolError(1007, "media.chunk / media.timestamp are not integers") from None
    if chunk < 1 or ts < 0:
        raise WsProtocolError(1007, "media.chunk starts at 1 and timestamp is >= 0")
    track = media.get("track", "inbound")
    if track not in ("inbound", "inbound_track"):
        raise WsProtocolError(1007, f"media.track {track!r} (only inbound is accepted)")
    return chunk, ts, payload


class WsCall(BaseCall):
    transport = "ws"

    def __init__(self, conn: ServerConnection, stream_sid: str, **kw: Any) -> None:
        super().__init__(**kw)
        self._conn = conn
        self.stream_sid = stream_sid
        # Twilio marks (module docstring): frames sent / confirmed played, marks below the floor
        self.marked_frames = 0  # agent frames covered by the latest mark sent
        self.confirmed_frames = 0
        self._cleared_upto = 0  # echoes of marks <= this came after a clear: not played
        self._mark_timer: asyncio.TimerHandle | None = None
        self.marks_sent = 0
        self.marks_confirmed = 0
        self.played_frames = 0  # agent frames Twilio confirmed played (never cleared ones)
        self.last_confirmed_at: float | None = None
        """Loop time (s) of the latest mark echo that confirmed playback, or None."""

    def unconfirmed_ms(self) -> int:
        """Return the agent audio (ms) sent on this call that Twilio has not yet confirmed
        played through a mark echo: what Twilio still has buffered (or is playing) now, to
        within one mark interval. 0 right after a clear (Twilio dropped its buffer)."""
        return max(0, self.agent_frames_sent - self.confirmed_frames) * self.frame_ms

    # -- the played position, for playout decisions (duck / pause / truncate) -----------------
    @property
    def played_ms(self) -> int:
        """Agent audio (ms) Twilio confirmed played on this call so far (cumulative over
        replies; audio dropped by a ``clear`` is never counted). A lower bound: audio played
        since the latest echo is confirmed by the next mark, at most ``MARK_EVERY_FRAMES``
        frames (100 ms) later or :data:`MARK_IDLE_S` after a burst; what played between the
        latest echo and a ``clear`` is never confirmed (Twilio echoes pending marks on clear
        whether played or not), so each clear may leave up to one mark interval uncounted."""
        return self.played_frames * self.frame_ms

    @property
    def sent_ms(self) -> int:
        """Agent audio (ms) sent to Twilio on this call so far (cumulative)."""
        return self.agent_frames_sent * self.frame_ms

    def on_mark(self, name: str) -> None:
        """Twilio echoed mark ``name``: a ``p<N>`` mark confirms N agent frames played
        (unless a clear dropped them); other names are ignored. Returns None."""
        if not name.startswith("p") or not name[1:].isdigit():
            return
        n = int(name[1:])
        if n > self.agent_frames_sent:
            raise WsProtocolError(1007, f"mark {name!r} echoes audio never sent")
        if n > self._cleared_upto and n > self.confirmed_frames:
            self.played_frames += n - self.confirmed_frames
            self.confirmed_frames = n
            self.marks_confirmed += 1
            self.last_confirmed_at = self._loop.time()

    async def _send_mark(self) -> None:
        if self._mark_timer is not None:
            self._mark_timer.cancel()
            self._mark_timer = None
        if self.agent_frames_sent > self.marked_frames and not self.closed:
            self.marked_frames = self.agent_frames_sent
            self.marks_sent += 1
            await self._send({"event": "mark", "streamSid": self.stream_sid,
                              "mark": {"name": f"p{self.marked_frames}"}})

    def _mark_soon(self) -> None:
        if self._mark_timer is not None:
            self._mark_timer.cancel()
        self._mark_timer = self._loop.call_later(
            MARK_IDLE_S, lambda: asyncio.ensure_future(self._send_mark()))

    async def _send(self, obj: dict[str, Any]) -> None:
        try:
            await self._conn.send(json.dumps(obj, separators=(",", ":")))
        except ConnectionClosed:
            self._end("connection closed")

    async def _transport_send_audio(self, payload: bytes) -> None:
        await self._send({"event": "media", "streamSid": self.stream_sid,
                          "media": {"payload": base64.b64encode(payload).decode("ascii")}})
        if self.agent_frames_sent - self.marked_frames >= MARK_EVERY_FRAMES:
            await self._send_mark()
        else:
            self._mark_soon()

    async def _transport_send_control(self, event: dict[str, Any]) -> None:
        if event.get("type") == "clear_playout":
            # what was sent is gone now (played or dropped): pending marks confirm nothing
            self._cleared_upto = self.marked_frames = self.confirmed_frames = self.agent_frames_sent
            if self._mark_timer is not None:
                self._mark_timer.cancel()
                self._mark_timer = None
            await self._send({"event": "clear", "streamSid": self.stream_sid})
        else:
            await self._send({"event": "mark", "streamSid": self.stream_sid,
                              "mark": {"name": control_mark_name(event)}})

    async def _transport_close(self, reason: str) -> None:
        if self._mark_timer is not None:
            self._mark_timer.cancel()
        # a caller ended for breaking its bounds gets the policy code (BaseCall.close_violation)
        await self._conn.close(1008 if self.policy_violation else 1000, reason[:120])


def control_mark_name(event: dict[str, Any]) -> str:
    """Return the short mark name a control event rides as over Twilio: ``ctl:<type>``, or
    ``ctl:error:<code>`` for an error (at most 64 characters)."""
    name = f"ctl:{event.get('type')}"
    if event.get("type") == "error" and event.get("code"):
        name += f":{event['code']}"
    return name[:64]


class WsIngress:
    """Serves Twilio Media Streams calls on TLS ``config.host:config.ws_port``, or on ``sock``
    if given (an already-listening TCP socket, e.g. a shard's SO_REUSEPORT listener)."""

    def __init__(self, config: IngressConfig, handler: CallHandler, authority: TokenAuthority | None = None,
                 sock: socket.socket | None = None) -> None:
        self.config = config
        self._sock = sock
        self.handler = handler
        self.authority = authority or TokenAuthority(config.auth_key)
        self.stats: Counter[str] = Counter()
        self.calls: dict[str, WsCall] = {}
        self.gate = PendingGate(config.max_unauthenticated, self.stats, "ws")
        self._server: Server | None = None
        self.port = 0
        self.cert_path: str | None = config.cert
        self.key_path: str | None = config.key

    async def start(self, tls: bool = True) -> int:
        """Bind and serve; return the TCP port."""
        ctx = None
        if tls:
            if self.cert_path is None:
                cert, key = ensure_self_signed(self.config.cert_dir)
                self.cert_path, self.key_path = str(cert), str(key)
            assert self.key_path is not None
            ctx = server_ssl_context(self.cert_path, self.key_path)
        self._server = await serve(self._serve, ssl=ctx, max_size=MAX_MESSAGE_BYTES,
                                   open_timeout=self.config.setup_timeout_s, sock=self._gated_socket())
        self.port = int(next(iter(self._server.sockets)).getsockname()[1])
        return self.port

    def _gated_socket(self) -> socket.socket:
        """The listening socket (``sock``, or one bound to host:ws_port) behind the
        unauthenticated-connection gate (clutchcall.prod.ingress.admission)."""
        shrink_tls_read_buffer()
        if self._sock is not None:
            return gated_listener(self._sock, self.gate)
        family, _kind, _proto, _, addr = socket.getaddrinfo(
            self.config.host, self.config.ws_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        plain = socket.create_server(addr[:2], family=family, backlog=1024)
        try:
            return gated_listener(plain, self.gate)
        finally:
            plain.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, conn: ServerConnection) -> None:
        self.stats["connections"] += 1
        call: WsCall | None = None
        task: asyncio.Task[None] | None = None
        try:
            start = await self._await_start(conn)
            call = self._open_call(conn, start)
            release_connection(conn.transport)  # authenticated: no longer counts as pending
            task = asyncio.ensure_future(self._run_handler(call))
            async for raw in conn:
                msg = parse_message(raw)
                ev = msg["event"]
                if ev == "media":
                    chunk, ts, payload = decode_media(msg)
                    call.feed_uplink(chunk - 1, payload, ts)
                elif ev == "mark":
                    self.stats["marks"] += 1
                    mark = msg.get("mark")
                    if isinstance(mark, dict) and isinstance(mark.get("name"), str):
                        call.on_mark(mark["name"])
                elif ev == "stop":
                    call._end("caller sent stop")
                    break
                elif ev in ("connected", "dtmf"):
                    pass
                else:
                    raise WsProtocolError(1007, f"unknown event {ev!r}")
        except WsProtocolError as err:
            self.stats[f"refused_{err.close_code}"] += 1
            log.info("refusing WebSocket peer: %s", err.reason)
            await conn.close(err.close_code, err.reason[:120])
        except ConnectionClosed:
            pass
        finally:
            if call is not None:
                call._end(call.close_reason or "connection closed")
                if self.calls.get(call.call_id) is call:
                    del self.calls[call.call_id]
                self.stats["calls_ended"] += 1
                if task is not None:
                    try:
                        await asyncio.wait_for(task, 5.0)
                    except TimeoutError:  # the handler's own errors are caught in _run_handler
                        task.cancel()
                self.authority.release_call(call.call_id)
            await conn.close(1000, "call ended")

    async def _await_start(self, conn: ServerConnection) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + self.config.setup_timeout_s
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise WsProtocolError(1008, "no start message in time")
            try:
                raw = await asyncio.wait_for(conn.recv(), remaining)
            except TimeoutError:
                raise WsProtocolError(1008, "no start message in time") from None
            msg = parse_message(raw)
            if msg["event"] == "connected":
                continue
            if msg["event"] != "start":
                raise WsProtocolError(1008, f"expected start, got {msg['event']!r}")
            return msg

    def _open_call(self, conn: ServerConnection, msg: dict[str, Any]) -> WsCall:
        start = msg.get("start")
        if not isinstance(start, dict):
            raise WsProtocolError(1007, "start message without start object")
        fmt = start.get("mediaFormat") or {}
        if not isinstance(fmt, dict) or (fmt.get("encoding"), int(fmt.get("sampleRate", 0) or 0),
                                         int(fmt.get("channels", 1) or 1)) != ("audio/x-mulaw", 8000, 1):
            raise WsProtocolError(1003, f"unsupported mediaFormat {fmt!r} (audio/x-mulaw 8000 Hz mono)")
        params = start.get("customParameters") or {}
        token = params.get("token") if isinstance(params, dict) else None
        if token is None and conn.request is not None:
            q = parse_qs(urlsplit(conn.request.path).query)
            token = q.get("token", [None])[0]
        try:
            call_id = self.authority.verify(token, time.time())
        except AuthError as err:
            self.stats[f"auth_{err.reason}"] += 1
            raise WsProtocolError(1008, str(err)) from None
        if len(self.calls) >= self.config.max_calls:
            raise WsProtocolError(1013, "edge at capacity")
        try:  # one live call per call id, across both ingresses (auth module docstring)
            self.authority.claim_call(call_id)
        except AuthError as err:
            self.stats[f"auth_{err.reason}"] += 1
            raise WsProtocolError(1008, "call already connected") from None
        sid = str(msg.get("streamSid") or start.get("streamSid") or f"MZ{call_id}")
        call = WsCall(conn, sid, call_id=call_id, codec="g711_ulaw", rate=8000, frame_ms=20, jitter_depth_ms=0)
        self.calls[call_id] = call
        self.stats["calls_started"] += 1
        return call

    async def _run_handler(self, call: WsCall) -> None:
        try:
            await self.handler.on_call(call)
        except Exception:
            log.exception("call handler failed for call %s", call.call_id)
            self.stats["handler_errors"] += 1
        finally:
            if not call.closed:
                await call.close("call ended")
