"""Call tokens: HMAC-SHA256 signed (call id, expiry), checked at the caller leg's door.

Theory of operation
-------------------
A token is ``v1.<call_id, base64url>.<expiry, unix seconds>.<signature, base64url>`` where the
signature is HMAC-SHA256 over ``v1.<call_id b64>.<expiry>`` with a key from config. The QUIC
ingress reads it from CLIENT_SETUP's AUTHORIZATION_TOKEN parameter (token type 0, USE_VALUE),
the WebSocket ingress from the Twilio ``start`` message's ``customParameters.token`` (or the
``token`` query parameter). :meth:`TokenAuthority.verify` returns the call id or raises
:class:`AuthError` whose ``reason`` is one of ``missing``, ``malformed``, ``forged``,
``expired``, ``wrong_call``; the ingress counts refusals per reason in :attr:`refused`.
Time is an argument (wall-clock seconds), so the checks are pure and testable.

The key: ``CLUTCHCALL_AUTH_KEY`` (or a configured key). There is no fixed key in the source:
without one, :func:`resolve_auth_key` gives a random key made once per process (so tokens
printed by ``serve`` on loopback work, and forked shards share it), and refuses a non-loopback
bind address, where anyone could reach the edge, with a ConfigError.

One live call per call id: a token may be presented again (a caller may redial after a
hang-up), but while a call with that id is running, :meth:`TokenAuthority.claim_call` refuses a
second one (reason ``in_use``). Both ingresses of one edge share the authority, so this holds
across QUIC and WebSocket; the ingress releases the id when the call's handler has returned.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
import secrets
from collections import Counter

from clutchcall.engine.errors import ConfigError, RemoteProtocolError

MAX_TOKEN_BYTES = 1024
AUTH_KEY_ENV = "CLUTCHCALL_AUTH_KEY"

#: made once per process (hex, so it also passes through environment variables)
_PROCESS_KEY = secrets.token_hex(32).encode("ascii")


def process_key() -> bytes:
    """Return this process's random development key (the same on every call; forked children
    inherit it)."""
    return _PROCESS_KEY


def is_loopback_host(host: str) -> bool:
    """Return True if ``host`` is a loopback address or ``localhost`` (a name or an unspecified
    address such as ``0.0.0.0`` is not)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_auth_key(host: str, configured: str | bytes | None = None) -> bytes:
    """Return the token key for an edge bound to ``host``: ``configured``, else
    ``$CLUTCHCALL_AUTH_KEY``, else (loopback only) :func:`process_key`. Raises ConfigError for
    a key shorter than 16 bytes or for a non-loopback ``host`` without a key."""
    key = configured if configured else os.environ.get(AUTH_KEY_ENV) or None
    if key is None:
        if not is_loopback_host(host):
            raise ConfigError(f"refusing to serve {host} without an auth key: set {AUTH_KEY_ENV} "
                              "(>= 16 bytes) or auth_key; only loopback gets a random per-process key")
        return _PROCESS_KEY
    kb = key.encode() if isinstance(key, str) else key
    if len(kb) < 16:
        raise ConfigError(f"auth key must be at least 16 bytes ({AUTH_KEY_ENV})")
    return kb


class AuthError(RemoteProtocolError):
    """A caller's token was refused; ``reason`` names why (missing/malformed/forged/expired/
    wrong_call/in_use)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"token refused: {reason}" + (f" ({detail})" if detail else ""))
        self.reason = reason


def _b64e(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def _b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class TokenAuthority:
    """Issues and verifies call tokens with one HMAC key (>= 16 bytes)."""

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) < 16:
            raise ConfigError("auth key must be at least 16 bytes")
        self._key = key
        self.refused: Counter[str] = Counter()
        self.accepted = 0
        self.live: set[str] = set()

    def claim_call(self, call_id: str) -> None:
        """Mark ``call_id`` live. Raises AuthError ``in_use`` (counted) if a call with this id
        is already running on this edge (module docstring: one live call per call id)."""
        if call_id in self.live:
            self.refused["in_use"] += 1
            raise AuthError("in_use", "a call with this id is already running")
        self.live.add(call_id)

    def release_call(self, call_id: str) -> None:
        """Mark ``call_id`` no longer live (idempotent); returns None."""
        self.live.discard(call_id)

    def _sign(self, msg: bytes) -> bytes:
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def issue(self, call_id: str, expires_at: float) -> str:
        """Return a token for ``call_id`` valid until ``expires_at`` (unix seconds)."""
        if not call_id or len(call_id) > 128:
            raise ConfigError("call id must be 1..128 characters")
        head = f"v1.{_b64e(call_id.encode())}.{int(expires_at)}"
        return f"{head}.{_b64e(self._sign(head.encode()))}"

    def verify(self, token: str | bytes | None, now: float, call_id: str | None = None) -> str:
        """Return the token's call id; raise AuthError (and count it) if it is not acceptable."""
        try:
            cid = self._verify(token, now, call_id)
        except AuthError as err:
            self.refused[err.reason] += 1
            raise
        self.accepted += 1
        return cid

    def _verify(self, token: str | bytes | None, now: float, call_id: str | None) -> str:
        if token is None or len(token) == 0:
            raise AuthError("missing")
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthError("malformed", "too long")
        if isinstance(token, bytes):
            try:
                token = token.decode("ascii")
            except UnicodeDecodeError:
                raise AuthError("malformed", "not ASCII") from None
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != "v1":
            raise AuthError("malformed", "expected v1.<call>.<expiry>.<sig>")
        try:
            cid = _b64d(parts[1]).decode("utf-8")
            expiry = int(parts[2])
            sig = _b64d(parts[3])
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise AuthError("malformed", "bad field encoding") from None
        head = ".".join(parts[:3]).encode()
        if not hmac.compare_digest(sig, self._sign(head)):
            raise AuthError("forged", "signature mismatch")
        if now >= expiry:
            raise AuthError("expired", f"expired {now - expiry:.0f} s ago")
        if call_id is not None and call_id != cid:
            raise AuthError("wrong_call", "token is for another call")
        return cid
