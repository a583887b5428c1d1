"""The embedded reference model: an OpenAI-Realtime-compatible speech-to-speech stand-in.

Theory of operation: :class:`ReferenceModelServer` is a ``websockets`` server on loopback (the
default model of ``serve`` and ``demo``, so nothing outside is needed). Each connection is one
:class:`_Session` that keeps the input audio buffer and a conversation of items. It handles the
client events in arrival order; a final ``response.create`` starts one response task which
waits the configured time to first audio, then streams the reply as
``response.output_audio.delta`` events (``response.audio.delta`` and the beta shapes for a
client that sends ``OpenAI-Beta: realtime=v1``) at 1x real time (one ``delta_ms`` chunk per
``delta_ms``, scheduled on absolute loop times so it never drifts, after an initial burst of
``lead_ms``). The reply is real speech
rendered by espeak-ng (``mode="speak"``, cycling through ``replies``) or the caller's own
committed turn played back (``mode="echo"``). ``response.cancel`` stops the stream and ends the
response with status ``cancelled``; ``conversation.item.truncate`` cuts an assistant item's
audio at ``audio_end_ms`` (refused past the audio sent). Misuse gets the protocol's ``error``
event and the session continues: commit of under 100 ms (``input_audio_buffer_commit_empty``),
unknown event types, malformed JSON or base64, ``response.create`` while a response is active
(``conversation_already_has_active_response``), ``response.cancel`` with none active.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from clutchcall.engine.errors import ConfigError
from clutchcall.prod.model.protocol import (
    BYTES_PER_MS,
    MIN_COMMIT_MS,
    SAMPLE_RATE,
    ModelProtocolError,
    b64decode_pcm,
    b64encode,
    dumps,
    obj,
    parse_event,
)
from clutchcall.prod.model.speech import SpeechCache, SpeechError

log = logging.getLogger("clutchcall.model.server")

DEFAULT_REPLIES = (
    "Sure, I can help with that. Let me check the details for you.",
    "Okay. Your appointment is confirmed for Tuesday at three in the afternoon.",
    "I understand. Is there anything else you would like to change?",
    "Thanks for waiting. The order shipped this morning and arrives on Friday.",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelServerConfig:
    """Knobs of the embedded model. Durations in integer ms."""

    host: str = "127.0.0.1"
    """Bind address; loopback by default."""
    port: int = 0
    """TCP port; 0 picks a free one (see :attr:`ReferenceModelServer.url`)."""
    mode: str = "speak"
    """``"speak"``: reply with espeak-ng speech of ``replies`` in turn; ``"echo"``: play the
    caller's committed turn back (trimmed of leading/trailing silence)."""
    time_to_first_audio_ms: int = 300
    """Delay from ``response.create`` to the first audio delta (the model's own latency)."""
    delta_ms: int = 40
    """Audio per ``response.output_audio.delta``; deltas are sent at 1x real time."""
    lead_ms: int = 80
    """The stream runs this far ahead of real time: the first deltas up to ``lead_ms`` go out
    at once, the rest at 1x (real models generate faster than real time; a small lead lets
    the edge's 1x playout start without starving on the first frames)."""
    replies: tuple[str, ...] = DEFAULT_REPLIES
    """Texts spoken in ``speak`` mode, cycled per response."""
    voice: str = "en-us"
    """espeak-ng voice."""
    speed: int = 175
    """espeak-ng words per minute."""
    max_buffer_ms: int = 120_000
    """The input buffer keeps at most this much audio (oldest dropped)."""
    max_message_bytes: int = 8 << 20
    """Largest WebSocket message accepted."""

    def __post_init__(self) -> None:
        if self.mode not in ("speak", "echo"):
            raise ConfigError(f"ModelServerConfig.mode: 'speak' or 'echo', got {self.mode!r}")
        if not 0 <= self.time_to_first_audio_ms <= 60_000:
            raise ConfigError("ModelServerConfig.time_to_first_audio_ms: must be 0..60000")
        if not 0 <= self.lead_ms <= 10_000:
            raise ConfigError("ModelServerConfig.lead_ms: must be 0..10000")
        if not 10 <= self.delta_ms <= 1000 or self.delta_ms % 10:
            raise ConfigError("ModelServerConfig.delta_ms: a multiple of 10 in 10..1000")
        if self.mode == "speak" and not any(r.strip() for r in self.replies):
            raise ConfigError("ModelServerConfig.replies: need at least one non-empty text")
        if not 0 <= self.port <= 65535:
            raise ConfigError("ModelServerConfig.port: must be 0..65535")
        if self.max_buffer_ms < MIN_COMMIT_MS:
            raise ConfigError("ModelServerConfig.max_buffer_ms: must be >= 100")


@dataclass(slots=True)
class _Item:
    id: str
    role: str
    audio_bytes: int = 0  # audio in the item (user: committed; assistant: sent so far)
    truncated_ms: int | None = None


@dataclass(slots=True)
class _Response:
    id: str
    task: asyncio.Task[None] | None = None
    item: _Item | None = None
    status: str = "in_progress"
    audio: bytes = b""


@dataclass(slots=True)
class ServerStats:
    """What the server saw, across sessions (for tests and the demo)."""

    sessions: int = 0
    responses: int = 0
    cancelled: int = 0
    errors_sent: dict[str, int] = field(default_factory=dict)
    truncations: list[tuple[str, int]] = field(default_factory=list)
    appended_bytes: int = 0
    commits: int = 0
    clears: int = 0


def _trim_silence(pcm: bytes, threshold: int = 500, margin_ms: int = 40) -> bytes:
    x = np.frombuffer(pcm, dtype="<i2")
    loud = np.flatnonzero(np.abs(x.astype(np.int32)) > threshold)
    if loud.size == 0:
        return b""
    margin = margin_ms * SAMPLE_RATE // 1000
    lo, hi = max(0, int(loud[0]) - margin), min(x.size, int(loud[-1]) + 1 + margin)
    return x[lo:hi].tobytes()


class _Session:
    """One connection: input buffer, conversation items, at most one active response."""

    def __init__(self, server: ReferenceModelServer, ws: ServerConnection, n: int) -> None:
        self.server = server
        self.cfg = server.config
        self.ws = ws
        self.n = n
        self.ids = itertools.count(1)
        self.buffer = bytearray()
        self.turn_audio = bytearray()  # committed since the last response (echo mode)
        self.items: dict[str, _Item] = {}
        self.last_item_id: str | None = None
        self.active: _Response | None = None
        self.dialect = _dialect_of(ws)
        self.names = _EVENT_NAMES[self.dialect]
        self.session: dict[str, Any] = _beta_session(n, self.cfg.voice) if self.dialect == "beta" else {
            "id": f"sess_{n}",
            "object": "realtime.session",
            "type": "realtime",
            "model": "clutchcall-reference",
            "output_modalities": ["audio"],
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": SAMPLE_RATE}, "turn_detection": None},
                "output": {"format": {"type": "audio/pcm", "rate": SAMPLE_RATE}, "voice": self.cfg.voice},
            },
        }

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{self.n}_{next(self.ids)}"

    async def send(self, event: dict[str, Any]) -> None:
        event.setdefault("event_id", self._id("event"))
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(dumps(event))

    async def error(self, code: str, message: str, event_id: str | None = None,
                    param: str | None = None, err_type: str = "invalid_request_error") -> None:
        stats = self.server.stats
        stats.errors_sent[code] = stats.errors_sent.get(code, 0) + 1
        await self.send({"type": "error", "error": {
            "type": err_type, "code": code, "message": message, "param": param,
            "event_id": event_id}})

    async def run(self) -> None:
        await self.send({"type": "session.created", "session": self.session})
        try:
            async for raw in self.ws:
                if isinstance(raw, bytes):
                    await self.error("invalid_value", "binary frames are not supported; send JSON text")
                    continue
                try:
                    ev = parse_event(raw)
                except ModelProtocolError as exc:
                    await self.error("invalid_json", str(exc))
                    continue
                await self.handle(ev)
        except ConnectionClosed:
            pass
        finally:
            if self.active is not None and self.active.task is not None:
                self.active.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self.active.task

    async def handle(self, ev: dict[str, Any]) -> None:
        kind = ev["type"]
        eid = ev.get("event_id") if isinstance(ev.get("event_id"), str) else None
        handler = _HANDLERS.get(kind)
        if handler is None:
            await self.error("unknown_event_type", f"Unknown event type '{kind}'", eid, "type")
            return
        await handler(self, ev, eid)

    # -- client events -------------------------------------------------------------------
    async def on_session_update(self, ev: dict[str, Any], eid: str | None) -> None:
        sess = ev.get("session")
        if not isinstance(sess, dict):
            await self.error("invalid_value", "session.update needs a 'session' object", eid, "session")
            return
        audio = obj(sess.get("audio"))
        inp, out = obj(audio.get("input")), obj(audio.get("output"))
        td = inp.get("turn_detection", sess.get("turn_detection"))
        if td is not None:
            await self.error("invalid_value", "the reference model supports only client-managed "
                             "turns (turn_detection: null)", eid, "turn_detection")
            return
        for fmt, where in ((inp.get("format"), "audio.input.format"),
                           (out.get("format"), "audio.output.format")):
            if fmt is not None and fmt != {"type": "audio/pcm", "rate": SAMPLE_RATE} and not (
                    isinstance(fmt, dict) and fmt.get("type") == "audio/pcm" and "rate" not in fmt):
                await self.error("invalid_value", f"{where}: only audio/pcm at 24000 Hz", eid, where)
                return
        for key in ("input_audio_format", "output_audio_format"):
            if key in sess and sess[key] != "pcm16":
                await self.error("invalid_value", f"{key}: only pcm16", eid, key)
                return
        if isinstance(sess.get("instructions"), str):
            self.session["instructions"] = sess["instructions"]
        await self.send({"type": "session.updated", "session": self.session})

    async def on_append(self, ev: dict[str, Any], eid: str | None) -> None:
        try:
            pcm = b64decode_pcm(ev.get("audio"))
        except ModelProtocolError as exc:
            await self.error("invalid_value", str(exc), eid, "audio")
            return
        self.server.stats.appended_bytes += len(pcm)
        self.buffer += pcm
        limit = self.cfg.max_buffer_ms * BYTES_PER_MS
        if len(self.buffer) > limit:
            del self.buffer[: len(self.buffer) - limit]

    async def on_commit(self, ev: dict[str, Any], eid: str | None) -> None:
        ms = len(self.buffer) / BYTES_PER_MS
        if ms < MIN_COMMIT_MS:
            await self.error(
                "input_audio_buffer_commit_empty",
                f"Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {ms:.2f}ms of audio.", eid)
            return
        item = _Item(self._id("item"), "user", len(self.buffer))
        self.items[item.id] = item
        self.turn_audio += self.buffer
        limit = self.cfg.max_buffer_ms * BYTES_PER_MS
        if len(self.turn_audio) > limit:
            del self.turn_audio[: len(self.turn_audio) - limit]
        self.buffer.clear()
        self.server.stats.commits += 1
        await self.send({"type": "input_audio_buffer.committed",
                         "previous_item_id": self.last_item_id, "item_id": item.id})
        self.last_item_id = item.id

    async def on_clear(self, ev: dict[str, Any], eid: str | None) -> None:
        self.buffer.clear()
        self.server.stats.clears += 1
        await self.send({"type": "input_audio_buffer.cleared"})

    async def on_response_create(self, ev: dict[str, Any], eid: str | None) -> None:
        if self.active is not None:
            await self.error("conversation_already_has_active_response",
                             f"Conversation already has an active response in progress: "
                             f"{self.active.id}. Wait until the response is finished before "
                             "creating a new one.", eid)
            return
        resp = _Response(self._id("resp"))
        self.active = resp
        self.server.stats.responses += 1
        t_request = asyncio.get_running_loop().time()
        await self.send({"type": "response.created", "response": self._resp_obj(resp)})
        resp.task = asyncio.create_task(self._stream(resp, t_request))

    async def on_response_cancel(self, ev: dict[str, Any], eid: str | None) -> None:
        resp = self.active
        rid = ev.get("response_id")
        if resp is None or (rid is not None and rid != resp.id):
            await self.error("response_cancel_not_active",
                             "Cancellation failed: no active response found", eid)
            return
        if resp.task is not None:
            resp.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await resp.task
        await self._finish(resp, "cancelled")

    async def on_truncate(self, ev: dict[str, Any], eid: str | None) -> None:
        item_id, ci, end_ms = ev.get("item_id"), ev.get("content_index"), ev.get("audio_end_ms")
        item = self.items.get(item_id) if isinstance(item_id, str) else None
        if item is None or item.role != "assistant":
            await self.error("invalid_value", f"Item with item_id not found or not an assistant "
                             f"audio item: {item_id!r}", eid, "item_id")
            return
        if ci != 0:
            await self.error("invalid_value", "content_index must be 0", eid, "content_index")
            return
        if not isinstance(end_ms, int) or isinstance(end_ms, bool) or end_ms < 0:
            await self.error("invalid_value", "audio_end_ms must be a non-negative integer", eid,
                             "audio_end_ms")
            return
        sent_ms = item.audio_bytes // BYTES_PER_MS
        if end_ms > sent_ms:
            await self.error("invalid_value", f"Audio content of {sent_ms}ms is already shorter "
                             f"than {end_ms}ms", eid, "audio_end_ms")
            return
        item.truncated_ms = end_ms
        item.audio_bytes = end_ms * BYTES_PER_MS
        self.server.stats.truncations.append((item.id, end_ms))
        await self.send({"type": "conversation.item.truncated", "item_id": item.id,
                         "content_index": 0, "audio_end_ms": end_ms})

    # -- the response stream -------------------------------------------------------------
    def _resp_obj(self, resp: _Response) -> dict[str, Any]:
        out = [] if resp.item is None else [self._item_obj(resp.item, resp.status)]
        obj: dict[str, Any] = {"object": "realtime.response", "id": resp.id, "status": resp.status,
                               "output": out, self.names["modalities"]: ["audio"]}
        if resp.status == "cancelled":
            obj["status_details"] = {"type": "cancelled", "reason": "client_cancelled"}
        return obj

    def _item_obj(self, item: _Item, status: str) -> dict[str, Any]:
        return {"id": item.id, "object": "realtime.item", "type": "message", "role": item.role,
                "status": "completed" if status == "completed" else "incomplete"
                if status == "cancelled" else "in_progress",
                "content": [{"type": self.names["item_audio"]}]}

    async def _reply_audio(self) -> bytes:
        if self.cfg.mode == "echo":
            pcm = _trim_silence(bytes(self.turn_audio))
            if pcm:
                return pcm
            text = "I did not hear anything."
        else:
            replies = [r for r in self.cfg.replies if r.strip()]
            text = replies[(self.server.stats.responses - 1) % len(replies)]
        return await self.server.speech.get(text, SAMPLE_RATE)

    async def _stream(self, resp: _Response, t_request: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            pcm = await self._reply_audio()
        except SpeechError as exc:
            log.error("reply rendering failed: %s", exc)
            await self.error("server_error", f"reply rendering failed: {exc}",
                             err_type="server_error")
            await self._finish(resp, "failed")
            return
        self.turn_audio.clear()
        resp.audio = pcm
        await asyncio.sleep(max(0.0, t_request + self.cfg.time_to_first_audio_ms / 1000 - loop.time()))
        item = _Item(self._id("item"), "assistant")
        resp.item = item
        self.items[item.id] = item
        self.last_item_id = item.id
        base = {"response_id": resp.id, "item_id": item.id, "output_index": 0}
        await self.send({"type": "response.output_item.added", "response_id": resp.id,
                         "output_index": 0, "item": self._item_obj(item, "in_progress")})
        await self.send({"type": "response.content_part.added", **base, "content_index": 0,
                         "part": {"type": "audio"}})
        step = self.cfg.delta_ms * BYTES_PER_MS
        t0 = loop.time()
        for k, off in enumerate(range(0, len(pcm), step)):
            delay = t0 + (k * self.cfg.delta_ms - self.cfg.lead_ms) / 1000 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            chunk = pcm[off: off + step]
            item.audio_bytes += len(chunk)
            await self.send({"type": self.names["audio_delta"], **base, "content_index": 0,
                             "delta": b64encode(chunk)})
        await self.send({"type": self.names["audio_done"], **base, "content_index": 0})
        await self.send({"type": "response.content_part.done", **base, "content_index": 0,
                         "part": {"type": "audio"}})
        resp.task = None
        await self._finish(resp, "completed")

    async def _finish(self, resp: _Response, status: str) -> None:
        resp.status = status
        if self.active is resp:
            self.active = None
        if status == "cancelled":
            self.server.stats.cancelled += 1
        if resp.item is not None:
            await self.send({"type": "response.output_item.done", "response_id": resp.id,
                             "output_index": 0, "item": self._item_obj(resp.item, status)})
        await self.send({"type": "response.done", "response": self._resp_obj(resp)})


# -- dialects: the GA protocol, or the beta one for a client sending ``OpenAI-Beta: realtime=v1``
# (names and shapes as the official openai SDK's types, openai.types.realtime / .beta.realtime)
_EVENT_NAMES = {
    "ga": {"audio_delta": "response.output_audio.delta", "audio_done": "response.output_audio.done",
           "item_audio": "output_audio", "modalities": "output_modalities"},
    "beta": {"audio_delta": "response.audio.delta", "audio_done": "response.audio.done",
             "item_audio": "audio", "modalities": "modalities"},
}


def _dialect_of(ws: ServerConnection) -> str:
    """Return ``beta`` if the client asked for it (``OpenAI-Beta: realtime=v1``), else ``ga``."""
    req = getattr(ws, "request", None)
    beta = req.headers.get("OpenAI-Beta", "") if req is not None else ""
    return "beta" if "realtime=v1" in beta else "ga"


def _beta_session(n: int, voice: str) -> dict[str, Any]:
    """The beta dialect's flat session object (the model name is left out: the beta type only
    allows OpenAI's own model names)."""
    return {"id": f"sess_{n}", "object": "realtime.session", "modalities": ["audio"],
            "input_audio_format": "pcm16", "output_audio_format": "pcm16", "voice": voice,
            "turn_detection": None}


_HANDLERS = {
    "session.update": _Session.on_session_update,
    "input_audio_buffer.append": _Session.on_append,
    "input_audio_buffer.commit": _Session.on_commit,
    "input_audio_buffer.clear": _Session.on_clear,
    "response.create": _Session.on_response_create,
    "response.cancel": _Session.on_response_cancel,
    "conversation.item.truncate": _Session.on_truncate,
}


class ReferenceModelServer:
    """The embedded model on loopback. ``async with ReferenceModelServer(cfg) as srv:``
    then connect a client to :attr:`url`."""

    def __init__(self, config: ModelServerConfig | None = None) -> None:
        self.config = config or ModelServerConfig()
        self.speech = SpeechCache(self.config.voice, self.config.speed)
        self.stats = ServerStats()
        self._server: Server | None = None
        self._n = itertools.count(1)
        self.port = self.config.port

    @property
    def url(self) -> str:
        """The ``ws://`` URL clients connect to (valid after :meth:`start`)."""
        return f"ws://{self.config.host}:{self.port}/v1/realtime"

    async def start(self, prewarm: bool = True) -> str:
        """Listen; with ``prewarm`` render the replies first so the first response's time to
        first audio is the configured one. Returns :attr:`url`. Raises ``OSError`` on bind."""
        if prewarm and self.config.mode == "speak":
            await asyncio.gather(*(self.speech.get(r, SAMPLE_RATE) for r in self.config.replies if r.strip()))
        self._server = await serve(self._handle, self.config.host, self.config.port,
                                   max_size=self.config.max_message_bytes, compression=None)
        self.port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self.port
        return self.url

    async def close(self) -> None:
        """Close every session and stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handle(self, ws: ServerConnection) -> None:
        n = next(self._n)
        self.stats.sessions += 1
        await _Session(self, ws, n).run()
