"""Typed errors of the audio subpackage.

Theory of operation: audio data reaching :mod:`clutchcall.engine.audio` comes from peers (a
caller's RTP/MoQT payloads, a model server's PCM deltas), so malformed data -- an odd PCM16 byte
count, an empty payload, a corrupt Opus packet, a frame of the wrong length -- raises
:class:`AudioError`, a :class:`~clutchcall.engine.errors.RemoteProtocolError`. Every object that
raises it leaves its stream state exactly as it was before the bad call, so the caller may log
and count the error and carry on with the next payload. Invalid construction parameters
(unsupported rate, frame length, aggressiveness) raise
:class:`~clutchcall.engine.errors.ConfigError` instead.
"""

from __future__ import annotations

from clutchcall.engine.errors import ConfigError, RemoteProtocolError

__all__ = ["AudioError", "ConfigError"]


class AudioError(RemoteProtocolError):
    """Malformed audio data (bad length, empty, undecodable); the stream state is unchanged."""
