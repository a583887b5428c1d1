"""Call tokens and the ticket store."""

from __future__ import annotations

import pytest

from clutchcall.engine.errors import ConfigError
from clutchcall.prod.ingress.auth import AuthError, TokenAuthority
from clutchcall.prod.ingress.tickets import TicketStore

KEY = b"k" * 32


def reason(a: TokenAuthority, tok, now=100.0, call=None) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(AuthError) as ei:
        a.verify(tok, now, call)
    return ei.value.reason


def test_token_roundtrip_and_refusals() -> None:
    a = TokenAuthority(KEY)
    tok = a.issue("call-9", 200)
    assert a.verify(tok, 100.0) == "call-9" and a.verify(tok.encode(), 199.0, "call-9") == "call-9"
    assert reason(a, tok, now=200.0) == "expired"
    assert reason(a, None) == "missing" and reason(a, "") == "missing"
    assert reason(a, "garbage") == "malformed"
    assert reason(a, "v1.!!.1.x") == "malformed"
    assert reason(a, tok, call="other") == "wrong_call"
    forged = TokenAuthority(b"z" * 32).issue("call-9", 200)
    assert reason(a, forged) == "forged"
    head, sig = tok.rsplit(".", 1)
    tampered = head.replace(".200", ".999") + "." + sig
    assert reason(a, tampered) == "forged"
    assert reason(a, "v1." + "A" * 2000) == "malformed"
    assert a.refused == {"expired": 1, "missing": 2, "malformed": 3, "wrong_call": 1, "forged": 2}
    with pytest.raises(ConfigError):
        TokenAuthority(b"short")


class T:
    def __init__(self, label: bytes, lifetime: int) -> None:
        self.ticket = label
        self.ticket_lifetime = lifetime


def test_ticket_store_expiry_single_use_and_bound() -> None:
    now = [0.0]
    s = TicketStore(max_age_s=100, max_tickets=2, clock=lambda: now[0])
    s.add(T(b"a", 10))
    s.add(T(b"b", 1000))
    assert s.pop(b"a").ticket == b"a"
    assert s.pop(b"a") is None and s.unknown == 1  # single use
    now[0] = 150.0
    assert s.pop(b"b") is None and s.expired == 1  # capped at max_age_s
    for i in range(5):
        s.add(T(bytes([i]), 10))
    assert len(s) == 2
