"""The caller's WebSocket/TLS transport speaking Twilio Media Streams (:class:`WsCallerTransport`,
one :class:`~clutchcall.prod.caller.client.CallerTransport`), and how a Twilio mark carries a
control event (:func:`control_from_mark`)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import time
from typing import Any

from clutchcall.prod.caller.client import CallerTransport


def control_from_mark(name: str) -> dict[str, Any] | None:
    """Return the control event a Twilio mark name carries (``ctl:<type>[:<code>]``, or an
    older JSON name), or None for a played-position mark (``p<N>``) or another name."""
    if name.startswith("ctl:"):
        parts = name.split(":", 2)
        event: dict[str, Any] = {"type": parts[1]}
        if len(parts) > 2:
            event["code"] = parts[2]
        return event
    if name.startswith("{"):
        try:
            event = json.loads(name)
        except ValueError:
            return None
        return event if isinstance(event, dict) else None
    return None


class WsCallerTransport(CallerTransport):
    """Twilio Media Streams over WebSocket/TLS (the caller plays Twilio's side)."""

    name = "ws"

    def __init__(self, uri: str, *, token: str, call_id: str, cafile: str | None = None) -> None:
        self.uri, self.token, self.call_id, self.cafile = uri, token, call_id, cafile
        self.ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self.stream_sid = f"MZ{call_id}"
        self._start_ms = 0.0
        # Twilio's playout as the edge sees it: agent audio plays at 1x from when it arrives;
        # a mark is echoed once the audio before it has played, pending ones at once on clear
        self._play_end = 0.0
        self._echoes: dict[str, asyncio.TimerHandle] = {}
        self._echo_tasks: set[asyncio.Future[None]] = set()
        self.marks_echoed = 0

    async def connect(self) -> None:
        from websockets.asyncio.client import connect

        ctx = None
        if self.uri.startswith("wss:"):
            ctx = ssl.create_default_context(cafile=self.cafile)
        self.ws = await connect(self.uri, ssl=ctx, max_size=1 << 20)
        await self.ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await self.ws.send(json.dumps({
            "event": "start", "sequenceNumber": "1", "streamSid": self.stream_sid,
            "start": {
                "streamSid": self.stream_sid, "accountSid": "AC0", "callSid": f"CA{self.call_id}",
                "tracks": ["inbound"], "customParameters": {"token": self.token, "call_id": self.call_id},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }))
        self._seq = 2
        self._start_ms = time.monotonic() * 1000
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        reason = "closed"
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                ev = msg.get("event")
                if ev == "media":
                    payload = base64.b64decode(msg["media"]["payload"])
                    now = asyncio.get_running_loop().time()
                    self._play_end = max(now, self._play_end) + len(payload) / 8000
                    self.on_agent_audio(payload)
                elif ev == "clear":
                    self._play_end = 0.0
                    for name in list(self._echoes):
                        self._echoes.pop(name).cancel()
                        self._echo(name)
                    self.on_control({"type": "clear_playout"})
                elif ev == "mark":
                    name = str(msg.get("mark", {}).get("name", ""))
                    delay = max(0.0, self._play_end - asyncio.get_running_loop().time())
                    self._echoes[name] = asyncio.get_running_loop().call_later(delay, self._echo, name)
                    event = control_from_mark(name)
                    if event is not None:
                        self.on_control(event)
        except ConnectionClosed as exc:
            reason = str(exc)
        finally:
            self.on_closed(reason)

    def _echo(self, name: str) -> None:
        """Echo mark ``name`` back as Twilio does (its audio played, or cleared)."""
        self._echoes.pop(name, None)
        self._seq += 1
        self.marks_echoed += 1
        msg = json.dumps({"event": "mark", "sequenceNumber": str(self._seq), "streamSid": self.stream_sid,
                          "mark": {"name": name}})
        task = asyncio.ensure_future(self._send_quietly(msg))
        self._echo_tasks.add(task)
        task.add_done_callback(self._echo_tasks.discard)

    async def _send_quietly(self, msg: str) -> None:
        with contextlib.suppress(Exception):
            await self.ws.send(msg)

    async def send_frame(self, seq: int, payload: bytes) -> None:
        from websockets.exceptions import ConnectionClosed

        self._seq += 1
        try:
            await self._send_media(seq, payload)
        except ConnectionClosed as exc:  # the edge ended the call: stop sending
            self.on_closed(str(exc))

    async def _send_media(self, seq: int, payload: bytes) -> None:
        await self.ws.send(json.dumps({
            "event": "media", "sequenceNumber": str(self._seq), "streamSid": self.stream_sid,
            "media": {"track": "inbound", "chunk": str(seq + 1), "timestamp": str(seq * 20),
                      "payload": base64.b64encode(payload).decode("ascii")},
        }))

    async def hangup(self) -> None:
        if self.ws is None:
            return
        from websockets.exceptions import ConnectionClosed

        for handle in self._echoes.values():
            handle.cancel()
        self._echoes.clear()

        with contextlib.suppress(ConnectionClosed, OSError):
            self._seq += 1
            await self.ws.send(json.dumps({"event": "stop", "sequenceNumber": str(self._seq),
                                           "streamSid": self.stream_sid,
                                           "stop": {"accountSid": "AC0", "callSid": f"CA{self.call_id}"}}))
            await self.ws.close()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 2.0)
            except TimeoutError:
                self._reader.cancel()
