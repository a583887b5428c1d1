"""Typed errors shared by every part of ClutchCall.

Theory of operation: one base, :class:`ClutchCallError`, and two branches that keep blame
apart. A :class:`RemoteProtocolError` is bad input from a peer (a caller, a model server):
it ends that peer's stream or call cleanly, is logged and counted, and never crashes the
process. A :class:`LocalProtocolError` is misuse by our own code (a shell feeding the engine
an input its state does not allow, time going backwards): a bug to fix, raised loudly.
:class:`ConfigError` is an invalid configuration value, reported at construction.
"""

from __future__ import annotations


class ClutchCallError(Exception):
    """Base of every error ClutchCall raises on purpose."""


class LocalProtocolError(ClutchCallError):
    """Our own code used an API wrongly; the state it acted on is unchanged."""


class RemoteProtocolError(ClutchCallError):
    """A peer sent something malformed or not allowed; end that peer's stream or call."""


class ConfigError(ClutchCallError, ValueError):
    """A configuration value is invalid; the message names the field and the problem."""


class TimeWentBackwards(LocalProtocolError):
    """An input carried a ``now`` earlier than an input already processed."""


class FrameOutOfOrder(LocalProtocolError):
    """A caller frame overlaps the previous one or repeats/precedes its sequence number."""


class InvalidInput(LocalProtocolError):
    """An input that the transition table has no row for in the current state, or a bad value."""
