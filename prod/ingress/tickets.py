"""Server-side TLS session ticket store for QUIC resumption and 0-RTT.

Theory of operation
-------------------
aioquic's server hands every ticket it issues to ``add`` (its ``session_ticket_handler``) and
asks ``pop`` (its ``session_ticket_fetcher``) when a client presents one. A ticket is kept
until its expiry (the ticket's own lifetime, capped by ``max_age_s``) and is single-use:
``pop`` removes it, so a replayed ClientHello cannot resume twice from the store. The store
is bounded (``max_tickets``, oldest evicted first). ``clock`` is injectable for tests.
Counters: issued, resumed, expired, unknown.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class TicketStore:
    def __init__(
        self, *, max_age_s: float = 3600.0, max_tickets: int = 10000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_age_s = max_age_s
        self.max_tickets = max_tickets
        self._clock = clock
        self._tickets: OrderedDict[bytes, tuple[float, Any]] = OrderedDict()
        self.issued = 0
        self.resumed = 0
        self.expired = 0
        self.unknown = 0

    def add(self, ticket: Any) -> None:
        """Store an issued ``aioquic.tls.SessionTicket``."""
        lifetime = min(float(getattr(ticket, "ticket_lifetime", self.max_age_s)), self.max_age_s)
        self._tickets[ticket.ticket] = (self._clock() + lifetime, ticket)
        self.issued += 1
        while len(self._tickets) > self.max_tickets:
            self._tickets.popitem(last=False)

    def pop(self, label: bytes) -> Any | None:
        """Return and forget the ticket for ``label``, or None if unknown or expired."""
        entry = self._tickets.pop(label, None)
        if entry is None:
            self.unknown += 1
            return None
        expires, ticket = entry
        if self._clock() >= expires:
            self.expired += 1
            return None
        self.resumed += 1
        return ticket

    def __len__(self) -> int:
        return len(self._tickets)
