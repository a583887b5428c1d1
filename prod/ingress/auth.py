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
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections import Counter

from clutchcall.engine.errors import ConfigError, RemoteProtocolError

MAX_TOKEN_BYTES = 1024


class AuthError(RemoteProtocolError):
    """A caller's token was refused; ``reason`` names why (missing/malformed/forged/expired/wrong_call)."""

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
