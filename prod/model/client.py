"""The model leg: an OpenAI Realtime client with client-managed turns.

Theory of operation: :class:`ModelLeg` owns one WebSocket to a Realtime-compatible server
(the embedded :mod:`clutchcall.prod.model.server` by default, or an external one from
``CLUTCHCALL_MODEL_URL`` / ``OPENAI_API_KEY``). Its action methods are synchronous so the
engine drive loop can call them in order without awaiting: each one turns an engine action
into protocol events and puts them on one outgoing queue, which a writer task sends in order.

* ``append(pcm)`` -- ``input_audio_buffer.append``; audio is batched up to
  ``append_batch_ms`` per message (frames still flow at 1x; every other action flushes first).
* ``prime()`` -- ``input_audio_buffer.commit`` (non-final).
* ``commit()`` -- ``input_audio_buffer.commit`` + ``response.create`` (the commit is skipped
  when a prime already committed everything but < 100 ms, which the server would refuse).
* ``backchannel_filtered()`` -- ``input_audio_buffer.clear`` when nothing else is pending
  (no prime since the last commit); otherwise the primed turn stays and nothing is sent.
* ``cancel(played_ms, ...)`` -- ``response.cancel`` (while a response is active) and
  ``conversation.item.truncate`` of the playing assistant item at ``audio_end_ms`` clamped to
  the audio actually sent to the caller and received from the model.
* ``speculate()`` -- the same events as ``commit()`` (``input_audio_buffer.commit`` +
  ``response.create``), marking that response as *speculative*
  (:attr:`ModelLeg.speculative_response_id` once the server names it); the edge holds its audio.
* ``retract()`` -- withdraw the speculative response: ``response.cancel`` and
  ``conversation.item.delete`` of each of its (unplayed) assistant items, so the model's
  context keeps no reply the caller never heard. If the server has not yet named the response
  (``response.created`` still in flight) both are sent when it does; an item the server adds
  after the cancel (crossed on the wire) is deleted when it is announced. A retracted
  response's audio is dropped and its ``response.done`` is not passed on (nobody waits for it).
  Both dialects (``ga``, ``beta``) use these event names.

A reader task handles server events: audio deltas (``response.output_audio.delta`` and the
older ``response.audio.delta``) go to the ``on_audio`` callback as :class:`AudioChunk` (deltas
of a cancelled response are dropped); ``response.created`` / ``response.done`` and output item
ids are tracked; ``error`` events become :class:`ModelServerError`, logged, counted in the
metrics and passed to ``on_error`` -- the leg keeps running. The model's own time to first
audio is measured here: from the moment ``response.create`` was written to the socket to the
arrival of the response's first audio delta.

Time-outs (each a :class:`ModelTimeoutError`, counted in ``model_timeouts{stage}``):
``connect_timeout_s`` for the TCP/TLS/WebSocket handshake and ``session_timeout_s`` for
``session.created`` (both raised by :meth:`ModelLeg.connect`); ``first_audio_timeout_s`` from
a ``response.create`` written to the first audio delta of its response. A response whose
first audio times out is asked again once (``response.cancel`` of the silent response, then a
new ``response.create``; ``model_response_retries``); ``on_error`` gets the time-out
(``final=False``). If the retry times out too, ``on_error`` gets it with ``final=True`` and
``on_response_done("", "failed")`` tells the pipeline no reply is coming (the pipeline sends the
caller an ``error`` control event, code ``model_timeout``). A response that ends without
audio, a refused ``response.create`` and a barge-in ``cancel`` stop the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from clutchcall.engine.errors import ConfigError, RemoteProtocolError
from clutchcall.prod.model.protocol import (
    AUDIO_DELTA_TYPES,
    BYTES_PER_MS,
    MIN_COMMIT_MS,
    ModelProtocolError,
    ModelServerError,
    ModelTimeoutError,
    b64decode_pcm,
    b64encode,
    dumps,
    obj,
    parse_event,
    session_update,
)

log = logging.getLogger("clutchcall.model.client")


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelLegConfig:
    """How to reach the model. ``url`` None means the embedded reference model."""

    url: str | None = None
    """``ws://`` / ``wss://`` URL of a Realtime-compatible server (env ``CLUTCHCALL_MODEL_URL``)."""
    api_key: str | None = None
    """Bearer token sent as ``Authorization`` (env ``OPENAI_API_KEY``); None sends none."""
    dialect: str = "ga"
    """``"ga"`` (gpt-realtime event shapes) or ``"beta"`` (older preview: adds the
    ``OpenAI-Beta: realtime=v1`` header and the flat session fields)."""
    append_batch_ms: int = 100
    """Audio per ``input_audio_buffer.append`` message (20 = one message per 20 ms frame).
    Every prime / commit / clear / cancel flushes first, so batching never delays a turn's
    end; 100 ms keeps the per-call message rate (and its send syscalls) at 10/s."""
    instructions: str | None = None
    """System instructions put in ``session.update``; None leaves the server's."""
    voice: str | None = None
    """Output voice put in ``session.update``; None leaves the server's."""
    connect_timeout_s: float = 5.0
    """Give up the TCP/TLS/WebSocket handshake after this long (ModelTimeoutError ``connect``)."""
    session_timeout_s: float = 3.0
    """Then give up waiting for ``session.created`` after this long (``session``)."""
    first_audio_timeout_s: float = 4.0
    """A response's first audio delta must come this long after its ``response.create`` was
    written, else it is asked again once, then the caller gets an error (``first_audio``)."""
    max_backlog: int = 300
    """Messages queued but not yet written (the model stopped reading: its TCP window is
    full) beyond which the leg gives up (~30 s of audio at 100 ms batches): it closes with
    a RemoteProtocolError instead of buffering without bound."""

    def __post_init__(self) -> None:
        if self.dialect not in ("ga", "beta"):
            raise ConfigError(f"ModelLegConfig.dialect: 'ga' or 'beta', got {self.dialect!r}")
        if self.url is not None and not self.url.startswith(("ws://", "wss://")):
            raise ConfigError(f"ModelLegConfig.url: must be ws:// or wss://, got {self.url!r}")
        if not 10 <= self.append_batch_ms <= 1000:
            raise ConfigError("ModelLegConfig.append_batch_ms: must be 10..1000")
        if self.max_backlog < 1:
            raise ConfigError("ModelLegConfig.max_backlog: must be >= 1")
        for name in ("connect_timeout_s", "session_timeout_s", "first_audio_timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"ModelLegConfig.{name}: must be > 0")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ModelLegConfig:
        """Build from ``CLUTCHCALL_MODEL_URL`` and ``OPENAI_API_KEY`` (``env`` defaults to
        ``os.environ``); keyword ``overrides`` that are not None win. Raises ConfigError."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {"url": env.get("CLUTCHCALL_MODEL_URL") or None,
                                  "api_key": env.get("OPENAI_API_KEY") or None}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Agent audio from the model: PCM16 24 kHz ``pcm`` of ``item_id`` in ``response_id``.
    ``first`` marks the response's first chunk, which carries ``model_ttfa_s`` (the model's
    own time to first audio, seconds) and ``received_at`` (loop time)."""

    response_id: str
    item_id: str
    pcm: bytes
    received_at: float
    first: bool = False
    model_ttfa_s: float | None = None


@dataclass(slots=True)
class _ResponseState:
    id: str
    requested_at: float | None
    first_audio_at: float | None = None
    status: str = "in_progress"
    item_ids: list[str] = field(default_factory=list)
    cancelled: bool = False
    speculative: bool = False
    retracted: bool = False
    deleted: set[str] = field(default_factory=set)


@dataclass(slots=True)
class ModelLegStats:
    """Counts of what the leg sent and received."""

    appends: int = 0
    appended_bytes: int = 0
    commits: int = 0
    primes: int = 0
    skipped_commits: int = 0
    clears: int = 0
    responses_requested: int = 0
    cancels: int = 0
    truncates: int = 0
    speculations: int = 0
    retractions: int = 0
    deletes: int = 0
    audio_bytes: int = 0
    dropped_audio_bytes: int = 0
    errors: int = 0


class ModelLeg:
    """One model session. Use ``await leg.connect()``, the action methods, ``await leg.close()``.

    Callbacks (all optional, called on the event loop): ``on_audio(AudioChunk)``,
    ``on_response_done(response_id, status)`` (``("", "failed")`` when a ``response.create`` was
refused: no reply is coming; one refused because another response was still active is sent
again when that one is done), ``on_error(ModelServerError | ModelProtocolError)``,
    ``on_closed(exc | None)`` once when the connection ends.
    """

    def __init__(
        self,
        config: ModelLegConfig,
        *,
        url: str | None = None,
        on_audio: Callable[[AudioChunk], None] | None = None,
        on_response_done: Callable[[str, str], None] | None = None,
        on_error: Callable[[RemoteProtocolError], None] | None = None,
        on_closed: Callable[[BaseException | None], None] | None = None,
        metrics: Any = None,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        self.config = config
        self.url = url or config.url
        if self.url is None:
            raise ConfigError("ModelLeg: no model URL (start the embedded model or set CLUTCHCALL_MODEL_URL)")
        self.on_audio = on_audio
        self.on_response_done = on_response_done
        self.on_error = on_error
        self.on_closed = on_closed
        self.metrics = metrics
        self.log = logger or log
        self.stats = ModelLegStats()
        self.errors: list[RemoteProtocolError] = []
        self.session: dict[str, Any] | None = None
        self.responses: dict[str, _ResponseState] = {}
        self.active_response: _ResponseState | None = None
        self.item_audio_bytes: dict[str, int] = {}
        self.current_item_id: str | None = None
        self.closed = False
        self.close_reason: BaseException | None = None
        self._ws: ClientConnection | None = None
        self._out: asyncio.Queue[tuple[str, str, str] | None] = asyncio.Queue()
        self._pending = bytearray()
        self._batch_bytes = config.append_batch_ms * BYTES_PER_MS
        self._uncommitted = 0
        self._primed = False
        self._requested_at: list[tuple[str, float]] = []  # (event_id, sent at) per response.create
        self._retry_create = False
        self._spec_event: str | None = None  # event id of the speculative response.create
        self._retract_event: str | None = None  # ...retracted before response.created came
        self._last_event_id: str | None = None
        self._retry_spec = False  # the response.create to ask again is the speculative one
        self.speculative_response_id: str | None = None
        """Id of the speculative response in flight (None when none, or not yet created)."""
        self._ids = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        self._session_created = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        # first-audio time-outs: create event id -> (timer, attempt); response id -> create id
        self._fa_timers: dict[str, tuple[asyncio.TimerHandle, int]] = {}
        self._fa_response: dict[str, str] = {}
        self._fa_retries: set[str] = set()  # create event ids that are retries
        self.timeouts: list[ModelTimeoutError] = []

    # -- lifecycle -----------------------------------------------------------------------
    async def connect(self) -> None:
        """Open the WebSocket, wait for ``session.created``, send ``session.update``.
        Raises :class:`RemoteProtocolError` if the server cannot be reached or misbehaves."""
        headers: dict[str, str] = {}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        if self.config.dialect == "beta":
            headers["OpenAI-Beta"] = "realtime=v1"
        try:
            assert self.url is not None
            self._ws = await connect(self.url, additional_headers=headers, max_size=16 << 20,
                                     open_timeout=self.config.connect_timeout_s,
                                     close_timeout=2.0, compression=None)
        except TimeoutError as exc:
            raise self._timed_out("connect", self.config.connect_timeout_s) from exc
        except (OSError, InvalidHandshake, InvalidURI) as exc:
            raise RemoteProtocolError(f"model leg: cannot connect to {self.url}: {exc}") from exc
        self._tasks = [asyncio.create_task(self._reader()), asyncio.create_task(self._writer())]
        self._send(session_update(self.config.dialect, self.config.instructions, self.config.voice))
        try:
            await asyncio.wait_for(self._session_created.wait(), self.config.session_timeout_s)
        except TimeoutError as exc:
            await self.close()
            raise self._timed_out("session", self.config.session_timeout_s) from exc
        if self.closed:
            raise RemoteProtocolError(f"model leg: closed during setup: {self.close_reason}")

    async def close(self) -> None:
        """Flush what is queued (briefly), close the socket and stop the tasks."""
        if self._ws is not None and not self.closed:
            self._flush_appends()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.flushed(), 1.0)
        self._mark_closed(None)
        if self._ws is not None:
            if self.close_reason is not None:  # a failed leg: no closing handshake
                self._ws.transport.abort()
            with contextlib.suppress(Exception):
                await self._ws.close()
        self._stop_first_audio_waits()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def flushed(self) -> None:
        """Return once every queued event has been written to the socket."""
        await self._idle.wait()

    # -- engine actions (synchronous; queued in order) ------------------------------------
    def append(self, pcm: bytes) -> None:
        """Queue caller audio (PCM16 24 kHz) for ``input_audio_buffer.append``."""
        if len(pcm) % 2:
            raise ValueError("append: PCM16 needs an even number of bytes")
        self._pending += pcm
        self._uncommitted += len(pcm)
        if len(self._pending) >= self._batch_bytes:
            self._flush_appends()

    def prime(self) -> bool:
        """Non-final commit; returns False (and sends nothing) if < 100 ms is buffered."""
        self._flush_appends()
        if self._uncommitted < MIN_COMMIT_MS * BYTES_PER_MS:
            return False
        self._send({"type": "input_audio_buffer.commit"})
        self._uncommitted = 0
        self._primed = True
        self.stats.primes += 1
        return True

    def commit(self) -> None:
        """Final commit and ``response.create``."""
        self._flush_appends()
        if self._uncommitted >= MIN_COMMIT_MS * BYTES_PER_MS or not self._primed:
            self._send({"type": "input_audio_buffer.commit"})
            self.stats.commits += 1
        else:
            self.stats.skipped_commits += 1
        self._uncommitted = 0
        self._primed = False
        self._send({"type": "response.create"}, kind="response.create")
        self.stats.responses_requested += 1

    def speculate(self) -> None:
        """Speculative commit: ``input_audio_buffer.commit`` + ``response.create`` now, the
        response marked speculative (its audio is held by the edge until released)."""
        self.commit()
        self._spec_event = self._last_event_id
        self.speculative_response_id = None
        self.stats.speculations += 1

    @property
    def speculating(self) -> bool:
        """True between :meth:`speculate` and :meth:`release` / :meth:`retract` (the
        speculative request is in flight, named or not)."""
        return self._spec_event is not None

    def release(self) -> None:
        """The speculative response is the turn's reply after all: it stays in the
        conversation (nothing is sent)."""
        self._spec_event = None
        self.speculative_response_id = None

    def retract(self) -> None:
        """Withdraw the speculative response (``response.cancel`` + ``conversation.item.delete``
        of its items, now or as soon as the server names them)."""
        self._flush_appends()
        self.stats.retractions += 1
        if self._spec_event is not None:  # a retracted reply is not awaited (no retry for it)
            self._stop_first_audio_wait(self._spec_event)
        rid = self.speculative_response_id
        resp = self.responses.get(rid) if rid is not None else None
        self.speculative_response_id = None
        if resp is None:  # response.created not seen yet: act when it comes
            self._retract_event = self._spec_event
            self._spec_event = None
            return
        self._spec_event = None
        self._retract_response(resp)

    def _retract_response(self, resp: _ResponseState) -> None:
        resp.retracted = True
        if not resp.cancelled and resp.status == "in_progress":
            self._send({"type": "response.cancel", "response_id": resp.id})
            self.stats.cancels += 1
        resp.cancelled = True
        for item in resp.item_ids:
            self._delete_item(resp, item)

    def _delete_item(self, resp: _ResponseState, item: str) -> None:
        if item in resp.deleted:
            return
        resp.deleted.add(item)
        self._send({"type": "conversation.item.delete", "item_id": item})
        self.stats.deletes += 1
        self.item_audio_bytes.pop(item, None)
        if self.current_item_id == item:
            self.current_item_id = None

    def backchannel_filtered(self) -> bool:
        """Clear the input buffer unless a prime is pending; returns whether it cleared."""
        if self._primed:
            return False
        self._pending.clear()
        self._uncommitted = 0
        self._send({"type": "input_audio_buffer.clear"})
        self.stats.clears += 1
        return True

    def cancel(self, played_ms: int, item_id: str | None = None, sent_ms: int | None = None) -> int | None:
        """Stop the agent: ``response.cancel`` while a response is active, then truncate
        ``item_id`` (default: the latest assistant item) at ``min(played_ms, sent_ms, audio
        received)``. Returns the ``audio_end_ms`` sent, or None if there was no item."""
        self._flush_appends()
        self._stop_first_audio_waits()  # the caller barged in: no reply is awaited any more
        resp = self.active_response
        if resp is not None and not resp.cancelled:
            resp.cancelled = True
            self._send({"type": "response.cancel", "response_id": resp.id})
            self.stats.cancels += 1
        item = item_id or self.current_item_id
        if item is None:
            return None
        for r in self.responses.values():
            if item in r.item_ids:
                r.cancelled = True
        end = max(0, int(played_ms))
        if sent_ms is not None:
            end = min(end, max(0, int(sent_ms)))
        end = min(end, self.item_audio_bytes.get(item, 0) // BYTES_PER_MS)
        self.item_audio_bytes[item] = end * BYTES_PER_MS  # the item is this long from now on
        self._send({"type": "conversation.item.truncate", "item_id": item, "content_index": 0,
                    "audio_end_ms": end})
        self.stats.truncates += 1
        return end

    # -- internals -----------------------------------------------------------------------
    def _flush_appends(self) -> None:
        if self._pending:
            eid = self._next_event_id()
            if eid is not None:
                # = dumps({"type": "input_audio_buffer.append", "audio": <base64>, "event_id": eid})
                # written out: neither base64 text nor our event ids need JSON escaping, and
                # this is one message per ``append_batch_ms`` of every call's audio
                text = ('{"type":"input_audio_buffer.append","audio":"' + b64encode(self._pending)
                        + '","event_id":"' + eid + '"}')
                self._out.put_nowait((text, "", eid))
            self.stats.appends += 1
            self.stats.appended_bytes += len(self._pending)
            self._pending.clear()

    def _send(self, event: dict[str, Any], kind: str = "") -> None:
        eid = self._next_event_id()
        if eid is None:
            return
        event["event_id"] = eid
        self._out.put_nowait((dumps(event), kind, eid))

    def _next_event_id(self) -> str | None:
        """Return the id of the next event to send (the queue is then no longer idle), or None
        if nothing may be sent: the leg is closed, or the model stopped reading (then the leg
        closes with a protocol error)."""
        if self.closed:
            return None
        if self._out.qsize() >= self.config.max_backlog:
            exc = RemoteProtocolError(f"model leg: {self._out.qsize()} messages not written: "
                                      "the model stopped reading")
            self._protocol_error(exc)
            self._mark_closed(exc)
            if self._ws is not None:
                asyncio.get_running_loop().create_task(self._abort())
            return None
        eid = f"evt_c{next(self._ids)}"
        self._last_event_id = eid
        self._idle.clear()
        return eid

    async def _abort(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self._ws is not None:
            self._ws.transport.abort()

    async def _writer(self) -> None:
        assert self._ws is not None
        loop = asyncio.get_running_loop()
        try:
            while True:
                if self._out.empty():
                    self._idle.set()
                msg = await self._out.get()
                if msg is None:
                    return
                await self._ws.send(msg[0])
                if msg[1] == "response.create":
                    self._requested_at.append((msg[2], loop.time()))
                    self._await_first_audio(msg[2])
        except ConnectionClosed as exc:
            self._mark_closed(exc)
        finally:
            self._idle.set()

    async def _reader(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                try:
                    self._handle(parse_event(raw))
                except ModelProtocolError as exc:
                    self._protocol_error(exc)
            self._mark_closed(None)
        except ConnectionClosed as exc:
            self._mark_closed(exc)

    def _mark_closed(self, exc: BaseException | None) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = exc
        self._session_created.set()
        self._idle.set()
        self._out.put_nowait(None)
        if self.on_closed is not None:
            self.on_closed(exc)

    def _protocol_error(self, exc: RemoteProtocolError) -> None:
        self.stats.errors += 1
        self.errors.append(exc)
        if isinstance(exc, ModelServerError):
            err_type, code = exc.err_type, exc.code
        elif isinstance(exc, ModelProtocolError):
            err_type, code = "protocol", "invalid_event"
        else:
            err_type, code = "connection", "backlog"
        if self.metrics is not None:
            self.metrics.model_error(err_type, code)
        # a cancel that crossed the response's end on the wire is a benign race
        level = logging.INFO if code == "response_cancel_not_active" else logging.WARNING
        self.log.log(level, "model leg error: %s", exc, extra={"model_error_code": code})
        if self.on_error is not None:
            self.on_error(exc)

    def _handle(self, ev: dict[str, Any]) -> None:
        kind = ev["type"]
        loop = asyncio.get_running_loop()
        if kind in AUDIO_DELTA_TYPES:
            pcm = b64decode_pcm(ev.get("delta"))
            rid, item = str(ev.get("response_id")), str(ev.get("item_id"))
            resp = self.responses.get(rid)
            if resp is None or resp.cancelled:
                self.stats.dropped_audio_bytes += len(pcm)
                return
            now = loop.time()
            self.item_audio_bytes[item] = self.item_audio_bytes.get(item, 0) + len(pcm)
            self.stats.audio_bytes += len(pcm)
            if item not in resp.item_ids:
                resp.item_ids.append(item)
                self.current_item_id = item
            first = resp.first_audio_at is None
            ttfa = None
            if first:
                self._first_audio_came(rid)
                resp.first_audio_at = now
                if resp.requested_at is not None:
                    ttfa = now - resp.requested_at
            if self.on_audio is not None:
                self.on_audio(AudioChunk(rid, item, pcm, now, first, ttfa))
        elif kind == "response.created":
            r = ev.get("response")
            if not isinstance(r, dict) or not isinstance(r.get("id"), str):
                raise ModelProtocolError("response.created without response.id")
            req = self._requested_at.pop(0) if self._requested_at else None
            eid, requested = (req[0], req[1]) if req is not None else (None, None)
            if req is not None:
                self._fa_response[r["id"]] = req[0]
            resp = _ResponseState(r["id"], requested)
            self.responses[resp.id] = resp
            self.active_response = resp
            if eid is not None and eid == self._spec_event:
                resp.speculative = True
                self.speculative_response_id = resp.id
            elif eid is not None and eid == self._retract_event:
                self._retract_event = None
                resp.speculative = True
                self._retract_response(resp)
        elif kind == "response.output_item.added":
            new_item = ev.get("item")
            resp = self.responses.get(str(ev.get("response_id")))
            if isinstance(new_item, dict) and isinstance(new_item.get("id"), str) and resp is not None:
                if new_item["id"] not in resp.item_ids:
                    resp.item_ids.append(new_item["id"])
                if resp.retracted:  # added after the cancel crossed it: delete it too
                    self._delete_item(resp, new_item["id"])
                elif not resp.cancelled:
                    self.current_item_id = new_item["id"]
        elif kind == "response.done":
            r = ev.get("response")
            if not isinstance(r, dict) or not isinstance(r.get("id"), str):
                raise ModelProtocolError("response.done without response.id")
            self._first_audio_came(r["id"])  # ended (with or without audio): stop waiting
            resp = self.responses.get(r["id"])
            status = str(r.get("status", "completed"))
            if resp is not None:
                resp.status = status
                if resp.retracted:
                    for out_item in r.get("output") or ():
                        if isinstance(out_item, dict) and isinstance(out_item.get("id"), str):
                            self._delete_item(resp, out_item["id"])
            if self.active_response is not None and self.active_response.id == r["id"]:
                self.active_response = None
            if len(self.responses) > 64:  # keep the recent ones only
                for old in list(self.responses)[:-32]:
                    del self.responses[old]
            if self.on_response_done is not None and not (resp is not None and resp.retracted):
                self.on_response_done(r["id"], status)
            if self._retry_create and self.active_response is None:
                self._retry_create = False
                self._send({"type": "response.create"}, kind="response.create")
                if self._retry_spec:  # the speculative request, asked again
                    self._retry_spec = False
                    self._spec_event = self._last_event_id
        elif kind == "error":
            e = obj(ev.get("error"))
            code = str(e.get("code") or "unknown")
            # a refused response.create will get no response.created: forget its send time
            refused = any(r[0] == e.get("event_id") for r in self._requested_at)
            if refused:
                self._stop_first_audio_wait(str(e.get("event_id")))
            self._requested_at = [r for r in self._requested_at if r[0] != e.get("event_id")]
            self._protocol_error(ModelServerError(
                str(e.get("type") or "unknown"), code,
                str(e.get("message") or ""), e.get("event_id"), e.get("param")))
            if refused:
                eid = e.get("event_id")
                if eid is not None and eid == self._retract_event:
                    self._retract_event = None  # a retracted speculation: nothing to ask again
                elif code == "conversation_already_has_active_response" and self.active_response is not None:
                    self._retry_create = True  # ask again once the active response is done
                    self._retry_spec = eid is not None and eid == self._spec_event
                elif self.on_response_done is not None:
                    self.on_response_done("", "failed")  # no reply is coming for this commit
        elif kind in ("session.created", "session.updated"):
            if isinstance(ev.get("session"), dict):
                self.session = ev["session"]
            self._session_created.set()
        # other events (committed, cleared, truncated, content parts, transcripts) need no action

    # -- time-outs (module docstring) ---------------------------------------------------------
    def _timed_out(self, stage: str, seconds: float, final: bool = True) -> ModelTimeoutError:
        exc = ModelTimeoutError(stage, seconds, final)
        self.timeouts.append(exc)
        if self.metrics is not None and hasattr(self.metrics, "model_timeouts"):
            self.metrics.model_timeouts.labels(stage=stage).inc()
        self.log.warning("%s", exc, extra={"model_timeout": stage})
        return exc

    def _await_first_audio(self, create_id: str) -> None:
        """Arm the first-audio timer of the ``response.create`` with event id ``create_id``."""
        if self.closed:
            return
        attempt = 1 if create_id in self._fa_retries else 0
        timer = asyncio.get_running_loop().call_later(self.config.first_audio_timeout_s,
                                                      self._first_audio_timeout, create_id)
        self._fa_timers[create_id] = (timer, attempt)

    def _stop_first_audio_wait(self, create_id: str) -> None:
        entry = self._fa_timers.pop(create_id, None)
        if entry is not None:
            entry[0].cancel()
        self._fa_retries.discard(create_id)

    def _stop_first_audio_waits(self) -> None:
        for create_id in list(self._fa_timers):
            self._stop_first_audio_wait(create_id)
        self._fa_response.clear()

    def _first_audio_came(self, response_id: str) -> None:
        create_id = self._fa_response.pop(response_id, None)
        if create_id is not None:
            self._stop_first_audio_wait(create_id)

    def _first_audio_timeout(self, create_id: str) -> None:
        entry = self._fa_timers.pop(create_id, None)
        if entry is None or self.closed:
            return
        attempt = entry[1]
        self._fa_retries.discard(create_id)
        final = attempt >= 1
        exc = self._timed_out("first_audio", self.config.first_audio_timeout_s, final=final)
        self.stats.errors += 1
        self.errors.append(exc)
        # the silent response (if the server created one) is given up: cancel it, drop its audio
        rid = next((r for r, c in self._fa_response.items() if c == create_id), None)
        if rid is not None:
            del self._fa_response[rid]
            resp = self.responses.get(rid)
            if resp is not None and not resp.cancelled:
                resp.cancelled = True
                if self.active_response is resp:
                    self._send({"type": "response.cancel", "response_id": rid})
        else:  # never created: its send time must not be matched to a later response
            self._requested_at = [r for r in self._requested_at if r[0] != create_id]
        if self.on_error is not None:
            self.on_error(exc)
        if not final:
            self._flush_appends()
            event: dict[str, Any] = {"type": "response.create"}
            self._send(event, kind="response.create")
            if "event_id" in event:
                self._fa_retries.add(event["event_id"])
                if create_id == self._spec_event:  # the speculative request, asked again
                    self._spec_event = event["event_id"]
                self.stats.responses_requested += 1
                if self.metrics is not None and hasattr(self.metrics, "model_retries"):
                    self.metrics.model_retries.inc()
        elif self.on_response_done is not None:
            self.on_response_done("", "failed")  # no reply is coming for this commit
