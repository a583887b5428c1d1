"""mcache/dcache rings (Firedancer tango design) for Python, in batches.

Theory of operation: a :class:`Ring` is one producer's mcache (fixed 32-byte metadata lines
stamped with sequence numbers) plus its dcache (payload chunks). The producer publishes a
batch of payloads with one C call; each :class:`Consumer` drains up to N fragments with one C
call. Consumers never block the producer: a consumer that falls more than ``depth`` fragments
behind is lapped, detects it by sequence number, resynchronises and counts the lost fragments
exactly in :attr:`Consumer.overruns`. A *reliable* consumer takes one of the ring's
flow-control (fseq) slots instead: the producer then publishes only as far as that consumer's
credits allow, and :meth:`Ring.publish` returns how many fragments actually went out.
The C side (``csrc/cc_tango.c``) holds the seqlock ordering with C11 atomics; cffi releases the
GIL around each call, so a producer and consumers in different Python threads run in parallel.
One thread publishes; each consumer is used by one thread at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, NamedTuple

from clutchcall.engine.errors import ConfigError, LocalProtocolError
from clutchcall.native._rings import ffi, lib

__all__ = ["Consumer", "Frag", "Ring", "ffi", "lib"]


class Frag(NamedTuple):
    """One drained fragment: its sequence number, signature and payload."""

    seq: int
    sig: int
    payload: bytes


class Ring:
    """One mcache + dcache with ``depth`` lines (a power of two >= 2) and payloads up to
    ``mtu`` bytes, with ``fseq_slots`` flow-control slots for reliable consumers.

    Raises ConfigError for an invalid depth / mtu / slot count, MemoryError if allocation fails.
    """

    def __init__(self, depth: int = 4096, mtu: int = 2048, fseq_slots: int = 0) -> None:
        if depth < 2 or depth & (depth - 1) or depth > 1 << 32:
            raise ConfigError(f"ring depth must be a power of two in [2, 2**32], got {depth}")
        if not 0 < mtu <= 65535:
            raise ConfigError(f"ring mtu must be in [1, 65535], got {mtu}")
        if not 0 <= fseq_slots <= lib.CC_MAX_FSEQ:
            raise ConfigError(f"fseq_slots must be in [0, {lib.CC_MAX_FSEQ}], got {fseq_slots}")
        ptr = lib.cc_ring_new(depth, mtu, fseq_slots)
        if ptr == ffi.NULL:
            raise MemoryError("cc_ring_new failed")
        self._ptr = ffi.gc(ptr, lib.cc_ring_delete)
        self.depth = depth
        self.mtu = mtu
        self.fseq_slots = fseq_slots
        self._taken: set[int] = set()

    @property
    def ptr(self) -> object:
        """The C ``cc_ring_t *`` (for other native modules)."""
        return self._ptr

    @property
    def seq_next(self) -> int:
        """Return the sequence number the next published fragment will get."""
        return int(lib.cc_ring_seq_next(self._ptr))

    def publish(self, payloads: Sequence[bytes], sigs: Sequence[int] | None = None,
                ctl: int = 0) -> int:
        """Publish ``payloads`` (each <= mtu bytes) in order with one C call; ``sigs`` are
        optional 64-bit signatures. Return how many were published (fewer than given only when
        a reliable consumer's credits ran out).

        Raises LocalProtocolError if a payload exceeds mtu or sigs has the wrong length.
        """
        n = len(payloads)
        if n == 0:
            return 0
        lens = [len(p) for p in payloads]
        if max(lens) > self.mtu:
            raise LocalProtocolError(f"payload of {max(lens)} bytes exceeds ring mtu {self.mtu}")
        if sigs is not None and len(sigs) != n:
            raise LocalProtocolError("sigs and payloads differ in length")
        buf = b"".join(payloads)
        c_sigs = ffi.new("uint64_t[]", list(sigs)) if sigs is not None else ffi.NULL
        got = lib.cc_publish_batch(self._ptr, ffi.from_buffer(buf) if buf else ffi.NULL,
                                   ffi.new("uint32_t[]", lens), c_sigs, n, ctl)
        if got < 0:  # cannot happen after the mtu check above
            raise LocalProtocolError("payload exceeds ring mtu")
        return int(got)

    def consumer(self, reliable: bool = False) -> Consumer:
        """Return a new consumer starting at the producer's current position. A reliable one
        takes a free fseq slot. Raises LocalProtocolError if none is free."""
        return Consumer(self, reliable)


class Consumer:
    """A reader of one :class:`Ring`; see the module docstring."""

    def __init__(self, ring: Ring, reliable: bool = False) -> None:
        self.ring = ring
        self._c = ffi.new("cc_consumer_t *")
        idx = -1
        if reliable:
            free = [i for i in range(ring.fseq_slots) if i not in ring._taken]
            if not free:
                raise LocalProtocolError("no free flow-control slot on this ring")
            idx = free[0]
        if lib.cc_consumer_init(self._c, ring.ptr, idx) != 0:
            raise LocalProtocolError(f"fseq slot {idx} unavailable")
        if idx >= 0:
            ring._taken.add(idx)
        self._idx = idx
        self._cap = 0
        self._bufs: tuple[Any, Any, Any, Any] | None = None

    @property
    def seq(self) -> int:
        """Return the next sequence number this consumer expects."""
        return int(self._c.seq)

    @property
    def overruns(self) -> int:
        """Return how many fragments this consumer lost to overrun so far."""
        return int(self._c.overrun_cnt)

    @property
    def drained(self) -> int:
        """Return how many fragments this consumer delivered so far."""
        return int(self._c.drained_cnt)

    def _buffers(self, max_n: int) -> tuple[Any, Any, Any, Any]:
        if self._bufs is None or self._cap < max_n:
            self._cap = max_n
            self._bufs = (ffi.new("uint8_t[]", max_n * self.ring.mtu),
                          ffi.new("uint32_t[]", max_n), ffi.new("uint64_t[]", max_n),
                          ffi.new("uint64_t[]", max_n))
        return self._bufs

    def drain(self, max_n: int = 256) -> list[Frag]:
        """Drain up to ``max_n`` fragments with one C call; return them oldest first (empty if
        nothing new). Lost fragments are counted in :attr:`overruns`."""
        if max_n <= 0:
            return []
        out, lens, seqs, sigs = self._buffers(max_n)
        n = lib.cc_drain_batch(self._c, out, max_n * self.ring.mtu, lens, seqs, sigs, max_n)
        res = []
        raw = ffi.buffer(out, sum(lens[i] for i in range(n)))[:] if n else b""
        off = 0
        for i in range(n):
            ln = lens[i]
            res.append(Frag(int(seqs[i]), int(sigs[i]), raw[off:off + ln]))
            off += ln
        return res

    def close(self) -> None:
        """Release this consumer's flow-control slot (if any); idempotent."""
        if self._idx >= 0:
            lib.cc_consumer_fini(self._c)
            self.ring._taken.discard(self._idx)
            self._idx = -1

    def __del__(self) -> None:
        with contextlib.suppress(AttributeError, TypeError):  # interpreter teardown
            self.close()
