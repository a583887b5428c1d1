"""WebSocket ingress over TLS, speaking Twilio Media Streams.

Theory of operation
-------------------
A PSTN leg (Twilio ``<Stream>``) or any client without QUIC connects with WebSocket over TLS
(TCP). The peer sends, as JSON text frames, ``connected``, then ``start`` (with
``streamSid``, ``mediaFormat`` = audio/x-mulaw, 8000 Hz, 1 channel, and
``customParameters.token``; a ``?token=`` query parameter is also accepted), then ``media``
messages (base64 G.711 µ-law, 20 ms each, ``chunk`` numbering from 1 and ``timestamp`` in ms),
``mark`` and finally ``stop``. The edge sends ``media`` (agent audio), ``clear``
(clear-playout) and ``mark`` (every other control event, as its JSON in the mark name).

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
from clutchcall.prod.ingress.auth import AuthError, TokenAuthority
from clutchcall.prod.ingress.call import BaseCall, CallHandler
from clutchcall.prod.ingress.config import IngressConfig
from clutchcall.prod.ingress.tls import ensure_self_signed, server_ssl_context

log = logging.getLogger("clutchcall.ingress.ws")

MAX_MESSAGE_BYTES = 64 * 1024
MAX_MEDIA_BYTES = 1600  # 200 ms of µ-law 8 kHz


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

    async def _send(self, obj: dict[str, Any]) -> None:
        try:
            await self._conn.send(json.dumps(obj, separators=(",", ":")))
        except ConnectionClosed:
            self._end("connection closed")

    async def _transport_send_audio(self, payload: bytes) -> None:
        await self._send({"event": "media", "streamSid": self.stream_sid,
                          "media": {"payload": base64.b64encode(payload).decode("ascii")}})

    async def _transport_send_control(self, event: dict[str, Any]) -> None:
        if event.get("type") == "clear_playout":
            await self._send({"event": "clear", "streamSid": self.stream_sid})
        else:
            await self._send({"event": "mark", "streamSid": self.stream_sid,
                              "mark": {"name": json.dumps(event, separators=(",", ":"))}})

    async def _transport_close(self, reason: str) -> None:
        await self._conn.close(1000, reason[:120])


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
        where: dict[str, Any] = ({"sock": self._sock} if self._sock is not None
                                 else {"host": self.config.host, "port": self.config.ws_port})
        self._server = await serve(self._serve, ssl=ctx, max_size=MAX_MESSAGE_BYTES,
                                   open_timeout=self.config.setup_timeout_s, **where)
        self.port = int(next(iter(self._server.sockets)).getsockname()[1])
        return self.port

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
            task = asyncio.ensure_future(self._run_handler(call))
            async for raw in conn:
                msg = parse_message(raw)
                ev = msg["event"]
                if ev == "media":
                    chunk, ts, payload = decode_media(msg)
                    call.feed_uplink(chunk - 1, payload, ts)
                elif ev == "mark":
                    self.stats["marks"] += 1
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
        if call_id in self.calls:
            raise WsProtocolError(1008, "call already connected")
        if len(self.calls) >= self.config.max_calls:
            raise WsProtocolError(1013, "edge at capacity")
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
