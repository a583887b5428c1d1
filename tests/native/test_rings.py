"""mcache/dcache rings: single-thread semantics, a model-based property test, and multi-thread
stress (C producer/consumers in Python threads with the GIL released) proving no torn reads
and exact overrun accounting."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clutchcall.engine.errors import ConfigError, LocalProtocolError
from clutchcall.native.rings import Ring, ffi, lib


def test_publish_then_drain_in_order() -> None:
    ring = Ring(depth=16, mtu=128)
    c = ring.consumer()
    assert c.drain() == []
    assert ring.publish([b"a", b"", b"x" * 128], sigs=[1, 2, 3]) == 3
    frags = c.drain(10)
    assert [(f.seq, f.sig, f.payload) for f in frags] == [(0, 1, b"a"), (1, 2, b""), (2, 3, b"x" * 128)]
    assert c.drain() == [] and c.overruns == 0 and c.seq == 3 and ring.seq_next == 3


def test_drain_respects_max_and_late_consumer_starts_at_producer() -> None:
    ring = Ring(depth=16, mtu=8)
    c = ring.consumer()
    ring.publish([bytes([i]) for i in range(5)])
    late = ring.consumer()
    assert [f.payload for f in c.drain(2)] == [b"\x00", b"\x01"]
    assert [f.seq for f in c.drain(10)] == [2, 3, 4]
    assert late.drain() == [] and late.seq == 5


def test_overrun_is_counted_exactly() -> None:
    ring = Ring(depth=8, mtu=16)
    c = ring.consumer()
    ring.publish([i.to_bytes(2, "little") for i in range(20)])
    frags = c.drain(100)
    assert [f.seq for f in frags] == [16, 17, 18, 19]
    assert [int.from_bytes(f.payload, "little") for f in frags] == [16, 17, 18, 19]
    assert c.overruns == 16 and c.overruns + len(frags) == 20


def test_reliable_consumer_gets_credit_flow_control() -> None:
    ring = Ring(depth=8, mtu=16, fseq_slots=1)
    rel = ring.consumer(reliable=True)
    fast = ring.consumer()
    assert ring.publish([b"p"] * 20) == 8  # credits: depth
    assert ring.publish([b"q"]) == 0
    assert len(rel.drain(3)) == 3
    assert ring.publish([b"r"] * 20) == 3
    got = rel.drain(100)
    assert len(got) == 8 and rel.overruns == 0
    assert [f.payload for f in got] == [b"p"] * 5 + [b"r"] * 3
    # the lapped consumer resyncs to the line's newer fragment (8) and counts 0..7 as lost
    assert len(fast.drain(100)) == 3 and fast.overruns == 8
    with pytest.raises(LocalProtocolError):
        ring.consumer(reliable=True)
    rel.close()
    assert ring.publish([b"s"] * 20) == 20  # no reliable consumer left: no flow control
    ring.consumer(reliable=True).close()  # the slot is free again


def test_bad_arguments_raise_typed_errors() -> None:
    for kw in ({"depth": 3}, {"depth": 1}, {"mtu": 0}, {"mtu": 70000}, {"fseq_slots": 99}):
        with pytest.raises(ConfigError):
            Ring(**kw)  # type: ignore[arg-type]
    ring = Ring(depth=4, mtu=4)
    with pytest.raises(LocalProtocolError):
        ring.publish([b"12345"])
    with pytest.raises(LocalProtocolError):
        ring.publish([b"1"], sigs=[1, 2])
    assert ring.seq_next == 0


def _model_drain(seq_next: int, expect: int, depth: int, max_n: int) -> tuple[list[int], int, int]:
    """Reference model of one drain: returns (delivered seqs, new expect, overrun added)."""
    out: list[int] = []
    lost = 0
    while len(out) < max_n and expect < seq_next:
        if seq_next - expect > depth:
            newest = expect + ((seq_next - 1 - expect) // depth) * depth
            lost += newest - expect
            expect = newest
            continue
        out.append(expect)
        expect += 1
    return out, expect, lost


@settings(max_examples=150, deadline=None)
@given(depth_log=st.integers(1, 5),
       ops=st.lists(st.tuples(st.booleans(), st.integers(0, 40)), max_size=40))
def test_single_thread_matches_model(depth_log: int, ops: list[tuple[bool, int]]) -> None:
    depth = 1 << depth_log
    ring = Ring(depth=depth, mtu=8)
    c = ring.consumer()
    seq_next, expect, lost = 0, 0, 0
    for is_publish, k in ops:
        if is_publish:
            payloads = [(seq_next + i).to_bytes(8, "little")[: (seq_next + i) % 9] for i in range(k)]
            assert ring.publish(payloads, sigs=[seq_next + i for i in range(k)]) == k
            seq_next += k
        else:
            want, expect, added = _model_drain(seq_next, expect, depth, k)
            lost += added
            frags = c.drain(k)
            assert [f.seq for f in frags] == want
            for f in frags:
                assert f.sig == f.seq and f.payload == f.seq.to_bytes(8, "little")[: f.seq % 9]
            assert c.overruns == lost and c.seq == expect


def _run_threads(targets: list[threading.Thread]) -> None:
    for t in targets:
        t.start()
    for t in targets:
        t.join(timeout=60)
        assert not t.is_alive()


@pytest.mark.parametrize("depth,sz", [(64, 48), (1024, 200), (8, 1000)])
def test_stress_c_threads_no_torn_reads_exact_overrun(depth: int, sz: int) -> None:
    """One producer and three best-effort consumers plus one reliable consumer, all in C loops
    called from Python threads (GIL released). Every delivered payload and signature is checked
    against the producer's formula; for each consumer, delivered + overrun == published."""
    total = 300_000
    ring = Ring(depth=depth, mtu=max(sz, 64), fseq_slots=1)
    consumers = [ring.consumer() for _ in range(3)] + [ring.consumer(reliable=True)]
    bad = [0] * len(consumers)
    published = [0]

    def consume(i: int) -> None:
        bad[i] = lib.cc_stress_consume(consumers[i]._c, total, 64, 5_000_000, 1)

    def produce() -> None:
        published[0] = lib.cc_stress_produce(ring.ptr, total, sz, 32, 5_000_000, 1)

    _run_threads([threading.Thread(target=consume, args=(i,)) for i in range(4)]
                 + [threading.Thread(target=produce)])
    assert published[0] == total
    for i, c in enumerate(consumers):
        assert bad[i] == 0, f"consumer {i}: torn or out-of-order fragments"
        assert c.seq == total
        assert c.drained + c.overruns == total
    assert consumers[3].overruns == 0 and consumers[3].drained == total


def test_stress_python_threads_through_the_wrapper() -> None:
    """Producer and consumer both in Python through the batch API; payload = seq repeated."""
    ring = Ring(depth=32, mtu=64)
    c = ring.consumer()
    total = 20_000
    errors: list[str] = []
    got = [0]

    def produce() -> None:
        seq = 0
        while seq < total:
            batch = [seq + i for i in range(min(50, total - seq))]
            seq += ring.publish([s.to_bytes(8, "little") * (1 + s % 8) for s in batch], sigs=batch)

    def consume() -> None:
        last = -1
        for _ in range(2_000_000):
            if c.seq >= total:
                break
            for f in c.drain(64):
                if f.seq <= last or f.sig != f.seq or f.payload != f.seq.to_bytes(8, "little") * (1 + f.seq % 8):
                    errors.append(f"bad frag {f.seq}")
                last = f.seq
                got[0] += 1

    _run_threads([threading.Thread(target=consume), threading.Thread(target=produce)])
    assert not errors
    assert c.seq == total and got[0] + c.overruns == total


def test_cffi_call_releases_the_gil_marker() -> None:
    # API mode cffi releases the GIL by default; the stress tests rely on it.
    assert ffi is not None and hasattr(lib, "cc_drain_batch")
