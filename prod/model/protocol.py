"""The slice of the OpenAI Realtime protocol that the model leg speaks (client-managed turns).

Theory of operation: every message is one JSON object in one WebSocket text frame with a
``type``. Audio is PCM16 little-endian mono at 24 kHz, base64 in the ``audio`` (client) or
``delta`` (server) field. With ``turn_detection: null`` the client owns the turn:

client -> server                      server -> client
``session.update``                    ``session.created`` / ``session.updated``
``input_audio_buffer.append``         (nothing)
``input_audio_buffer.commit``         ``input_audio_buffer.committed`` (or ``error``
                                       ``input_audio_buffer_commit_empty`` under 100 ms)
``input_audio_buffer.clear``          ``input_audio_buffer.cleared``
``response.create``                   ``response.created``, ``response.output_item.added``,
                                      ``response.content_part.added``,
                                      ``response.output_audio.delta`` ...,
                                      ``response.output_audio.done``, ``...content_part.done``,
                                      ``response.output_item.done``, ``response.done``
``response.cancel``                   ``response.done`` with status ``cancelled``
``conversation.item.truncate``        ``conversation.item.truncated``
anything malformed                    ``error`` {type, code, message, param, event_id}

The older (beta) names ``response.audio.delta`` / ``response.audio.done`` are accepted by the
client. This module holds the names, constants and the (de)coding helpers both sides share.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from clutchcall.engine.errors import RemoteProtocolError

SAMPLE_RATE = 24000
"""Model-leg audio rate (Hz), PCM16 mono."""
BYTES_PER_MS = SAMPLE_RATE * 2 // 1000
"""48 bytes of PCM16 per millisecond at 24 kHz."""
MIN_COMMIT_MS = 100
"""A commit with less buffered audio than this is refused (``input_audio_buffer_commit_empty``)."""

AUDIO_DELTA_TYPES = frozenset({"response.output_audio.delta", "response.audio.delta"})
AUDIO_DONE_TYPES = frozenset({"response.output_audio.done", "response.audio.done"})


class ModelProtocolError(RemoteProtocolError):
    """The model server sent something this client cannot parse (not JSON, no type, bad audio)."""


class ModelServerError(RemoteProtocolError):
    """The model server reported an ``error`` event. ``code``, ``err_type``, ``event_id``
    (of the client event that caused it, when given) and ``param`` mirror the event."""

    def __init__(self, err_type: str, code: str, message: str, event_id: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(f"model error {err_type}/{code}: {message}")
        self.err_type = err_type
        self.code = code
        self.message = message
        self.event_id = event_id
        self.param = param


class ModelTimeoutError(RemoteProtocolError):
    """The model did not answer in time. ``stage`` is ``connect`` (TCP/TLS/WebSocket
    handshake), ``session`` (no ``session.created``) or ``first_audio`` (a response's first
    audio delta did not come; ``final`` False for the first time-out of a response, which is
    retried once, True when the retry timed out too)."""

    def __init__(self, stage: str, seconds: float, final: bool = True) -> None:
        super().__init__(f"model timeout: no {stage.replace('_', ' ')} within {seconds:g} s"
                         + ("" if final else " (retrying the response once)"))
        self.stage = stage
        self.seconds = seconds
        self.final = final


def pcm_ms(nbytes: int) -> float:
    """Return the duration in ms of ``nbytes`` of 24 kHz PCM16."""
    return nbytes / BYTES_PER_MS


def b64encode(pcm: bytes | bytearray) -> str:
    """Return ``pcm`` as base64 text."""
    return base64.b64encode(pcm).decode("ascii")


def b64decode_pcm(text: Any) -> bytes:
    """Return the PCM16 bytes in base64 ``text``; raises :class:`ModelProtocolError` if it is
    not a string, not valid base64, or not a whole number of 16-bit samples."""
    if not isinstance(text, str):
        raise ModelProtocolError("audio: expected a base64 string")
    try:
        pcm = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ModelProtocolError(f"audio: invalid base64: {exc}") from exc
    if len(pcm) % 2:
        raise ModelProtocolError("audio: odd number of bytes for PCM16")
    return pcm


def parse_event(raw: str | bytes) -> dict[str, Any]:
    """Return the event object in one WebSocket message; raises :class:`ModelProtocolError`
    unless it is a JSON object with a string ``type``."""
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelProtocolError(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ModelProtocolError("event without a string 'type'")
    return obj


def obj(value: Any) -> dict[str, Any]:
    """Return ``value`` if it is a JSON object (dict), else an empty dict."""
    return value if isinstance(value, dict) else {}


def dumps(event: dict[str, Any]) -> str:
    """Return ``event`` as compact JSON text."""
    return json.dumps(event, separators=(",", ":"))


def session_update(dialect: str = "ga", instructions: str | None = None,
                   voice: str | None = None) -> dict[str, Any]:
    """Return the ``session.update`` for client-managed turns, PCM16 24 kHz both ways.
    ``dialect`` ``"ga"`` (gpt-realtime) or ``"beta"`` (the older preview shape)."""
    if dialect == "ga":
        audio_fmt = {"type": "audio/pcm", "rate": SAMPLE_RATE}
        output: dict[str, Any] = {"format": audio_fmt}
        if voice:
            output["voice"] = voice
        session: dict[str, Any] = {
            "type": "realtime",
            "output_modalities": ["audio"],
            "audio": {"input": {"format": dict(audio_fmt), "turn_detection": None}, "output": output},
        }
    elif dialect == "beta":
        session = {
            "modalities": ["audio", "text"],
            "input_audio_format": "pcm16",
            "output_audio_format": "pcm16",
            "turn_detection": None,
        }
        if voice:
            session["voice"] = voice
    else:
        raise ValueError(f"unknown dialect {dialect!r}")
    if instructions:
        session["instructions"] = instructions
    return {"type": "session.update", "session": session}
