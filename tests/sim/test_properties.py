"""Properties over random loss patterns and schedules (hypothesis)."""

from __future__ import annotations

import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from clutchcall.sim.feed import feed_schedule
from clutchcall.sim.link import Link, LinkConfig, direction_rngs
from clutchcall.sim.transport import QuicModel, TcpTlsModel


class _Drop(Link):
    def __init__(self, cfg: LinkConfig, drop: frozenset[int]) -> None:
        super().__init__(cfg, direction_rngs(0)["uplink"])
        self.drop, self.n = drop, 0

    def transmit(self, t: float, nbytes: int) -> float | None:
        self.n += 1
        return None if self.n - 1 in self.drop else super().transmit(t, nbytes)


@settings(max_examples=60, deadline=None)
@given(drop=st.frozensets(st.integers(0, 80), max_size=25),
       ack_drop=st.frozensets(st.integers(0, 60), max_size=15),
       n=st.integers(1, 40), gap_ms=st.sampled_from([1, 10, 20, 60]),
       rtt=st.sampled_from([10.0, 50.0, 150.0]), jitter=st.sampled_from([0.0, 5.0]))
def test_every_message_is_delivered_no_earlier_than_the_path_allows(
        drop: frozenset[int], ack_drop: frozenset[int], n: int, gap_ms: int, rtt: float,
        jitter: float) -> None:
    cfg = LinkConfig(rtt_ms=rtt, jitter_ms=jitter)
    times = [k * gap_ms / 1000.0 for k in range(n)]
    for model in (QuicModel, TcpTlsModel):
        m = model(_Drop(cfg, drop), _Drop(cfg, ack_drop))
        d = m.deliver(times, [160] * n)
        assert all(math.isfinite(x) for x in d)  # recovery always finishes
        assert all(x >= t + rtt / 2000.0 - 1e-9 for x, t in zip(d, times, strict=True))
        if model is TcpTlsModel:
            assert d == sorted(d)  # one ordered byte stream
        if not drop and not ack_drop and jitter == 0:
            assert m.retransmissions == 0  # nothing lost, nothing reordered: nothing resent


@settings(max_examples=100, deadline=None)
@given(extra=st.lists(st.one_of(st.just(math.inf), st.floats(0, 0.3)), min_size=1, max_size=60),
       speech=st.lists(st.booleans(), min_size=60, max_size=60),
       late=st.sampled_from([0.0, 0.04, 0.1]), skip_late_speech=st.booleans())
def test_jitter_buffer_feeds_in_order_at_most_1x_never_early(
        extra: list[float], speech: list[bool], late: float, skip_late_speech: bool) -> None:
    n = len(extra)
    send = [(k + 1) * 0.02 for k in range(n)]
    arrival = [s + 0.025 + e for s, e in zip(send, extra, strict=True)]
    out, skipped = feed_schedule(send, arrival, tuple(speech[:n]), 0.02, 0.025, late,
                                 skip_late_speech=skip_late_speech)
    assert len(out) + skipped == n
    seqs = [k for _t, k, _s in out]
    assert seqs == sorted(set(seqs))
    for (t0, _k0, _s0), (t1, _k1, _s1) in itertools.pairwise(out):
        assert t1 >= t0 + 0.02 - 1e-9  # never faster than 1x: frames never overlap
    for t, k, s in out:
        assert t >= arrival[k] - 1e-9 and s == speech[k]
        if skip_late_speech or not s:
            assert t <= send[k] + 0.025 + late + 1e-9  # within the buffer's deadline
