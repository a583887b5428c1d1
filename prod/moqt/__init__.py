"""clutchcall.prod.moqt: a sans-IO MoQT draft-14 wire codec and session state machine.

``wire`` turns bytes into typed messages and back (control messages, subgroup data streams,
object datagrams); ``session`` holds the per-connection rules (setup first, request IDs,
subscriptions and track aliases) and turns validated messages into events. Neither does I/O:
the QUIC ingress (clutchcall.prod.ingress.quic) and the caller feed them bytes.
"""

from clutchcall.prod.moqt.wire import MOQT_ALPN, MOQT_VERSION_14, MoqtError, TerminationCode

__all__ = ["MOQT_ALPN", "MOQT_VERSION_14", "MoqtError", "TerminationCode"]
