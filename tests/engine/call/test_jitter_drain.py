"""Uplink jitter buffer: the lag-drain policy (hand-driven clock), and the simulator's drive
of the same object (``sim.feed.jitter_releases``) agreeing with the ingress's frame for frame."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clutchcall.engine.call.jitter import JitterBuffer
from clutchcall.prod.ingress.call import silence_judge
from clutchcall.sim.feed import jitter_releases

F = 0.02


def silent(payload: bytes) -> bool:
    return payload == b"."


def drive(arrival: list[float], speech: list[bool], depth_ms: int) -> tuple[list[tuple[float, int]], JitterBuffer]:
    """Push frames in arrival order (ties: by seq), popping at every timer in between;
    return [(release time, seq)] and the buffer."""
    b = JitterBuffer(frame_ms=20, depth_ms=depth_ms, is_silent=silent, max_frames=10_000)
    out: list[tuple[float, int]] = []

    def pop_until(t: float, strict: bool) -> None:
        while (d := b.get_timer()) is not None and (d < t if strict else d <= t):
            out.extend((f.released_at, f.seq) for f in b.pop(max(d, b._last_now)))

    for a, k in sorted((a, k) for k, a in enumerate(arrival)):
        pop_until(a, strict=True)
        b.push(a, k, b"S" if speech[k] else b".")
        out.extend((f.released_at, f.seq) for f in b.pop(a))
    pop_until(float("inf"), strict=False)
    return out, b


def stall(n: int, at: int, extra: float, owd: float = 0.025) -> list[float]:
    """TCP-like: frame ``at`` and every later frame held until ``at``'s send + owd + extra."""
    send = [F * (k + 1) for k in range(n)]
    arr = [s + owd for s in send]
    for k in range(at, n):
        arr[k] = max(arr[k], send[at] + owd + extra)
    return arr


def test_ws_stall_lag_drains_in_silence_never_in_speech() -> None:
    arr = stall(30, 2, 0.07)
    speech = [True] * 10 + [False] * 20
    out, b = drive(arr, speech, 0)
    assert [k for _t, k in out] == list(range(30))  # nothing dropped, in order
    lag = [t - a_nominal for (t, _k), a_nominal in zip(out, stall(30, 0, 0.0), strict=True)]
    # speech keeps the 70 ms lag at 1x; the silence after it gives it back 20 ms per frame,
    # then the 10 ms rest (less than a frame) in one step
    assert lag[2:11] == pytest.approx([0.07] * 9)
    assert lag[11:14] == pytest.approx([0.05, 0.03, 0.01])
    assert lag[14:] == pytest.approx([0.0] * 16)
    assert b.stats.reanchored == 1 and b.stats.drained == 4
    assert b.stats.lag_ms == pytest.approx(0.0) and b.stats.max_lag_ms == pytest.approx(70.0)
    assert b.stats.released == 30 and b.stats.lost == 0
    # all speech: the lag is kept (speech is never played faster)
    out, b = drive(arr, [True] * 30, 0)
    assert b.stats.drained == 0 and out[-1][0] - (0.02 * 30 + 0.025) == pytest.approx(0.07)


def test_drain_never_goes_below_depth() -> None:
    arr = stall(40, 3, 0.1)
    out, b = drive(arr, [False] * 40, 40)
    # 100 ms stall, 40 ms of it absorbed by the depth: 60 ms of lag, drained in 3 frames
    assert b.stats.max_lag_ms == pytest.approx(60.0)
    assert b.stats.drained == 3 and b.stats.lag_ms == pytest.approx(0.0)
    # a drain never plays a frame with less than ``depth`` of buffering (frames right behind
    # a re-anchor may have less, drain or not)
    plain, _ = drive(arr, [True] * 40, 40)
    for (t, k), (t0, _k0) in zip(out, plain, strict=True):
        assert t >= min(arr[k] + 0.04, t0) - 1e-9
    assert out[-1][0] == pytest.approx(arr[-1] + 0.04) and plain[-1][0] == pytest.approx(arr[-1] + 0.1)


def test_sub_frame_lag_drains_in_silence() -> None:
    # QUIC-like depth 40: a 47 ms stall re-anchors by 7 ms (less than a frame). Before, that
    # rest was never drained and every later turn of the call was 7 ms later (issue 17).
    arr = stall(40, 3, 0.047)
    out, b = drive(arr, [True] * 10 + [False] * 30, 40)
    assert [k for _t, k in out] == list(range(40))
    assert b.stats.max_lag_ms == pytest.approx(7.0) and b.stats.reanchored == 1
    assert b.stats.drained == 1 and b.stats.lag_ms == pytest.approx(0.0)
    nominal = [a + 0.04 for a in stall(40, 0, 0.0)]  # no stall: depth after arrival
    held = [t - n for (t, _k), n in zip(out, nominal, strict=True)]
    assert held[3:11] == pytest.approx([0.007] * 8)  # speech keeps its 1x spacing
    assert held[11:] == pytest.approx([0.0] * 29)  # from the first silent frame on: no lag
    # all speech: the rest is kept
    plain, b = drive(arr, [True] * 40, 40)
    assert b.stats.drained == 0 and b.stats.lag_ms == pytest.approx(7.0)
    # the drain never plays a frame with less than ``depth`` of buffering (frames right behind
    # the re-anchor have less, drain or not)
    for (t, k), (t0, _k0) in zip(out, plain, strict=True):
        assert t >= min(arr[k] + 0.04, t0) - 1e-9


def test_concealed_frames_drain_too() -> None:
    b = JitterBuffer(frame_ms=20, depth_ms=0, is_silent=None, conceal=lambda seq: b"C")
    b.push(0.0, 0, b"S")
    assert [f.seq for f in b.pop(0.0)] == [0]
    b.push(0.06, 1, b"S")  # 40 ms late: re-anchor
    assert [f.seq for f in b.pop(0.06)] == [1] and b.stats.lag_ms == pytest.approx(40.0)
    b.push(0.07, 3, b"S")
    b.push(0.075, 4, b"S")
    out = b.pop(0.08)  # slot of 2: missing with 3 buffered -> concealed, then 3 follows at once
    assert [(f.seq, f.concealed) for f in out] == [(2, True), (3, False)]
    assert b.stats.drained == 1 and b.stats.lag_ms == pytest.approx(20.0)


def test_silence_judge_by_energy() -> None:
    import numpy as np

    from clutchcall.engine.audio import ulaw_encode

    judge = silence_judge("pcm16")
    assert judge is not None
    quiet = (np.ones(320) * 10).astype("<i2").tobytes()
    loud = (np.sin(np.arange(320) / 3) * 8000).astype("<i2").tobytes()
    assert judge(quiet) and not judge(loud) and judge(bytes(640))
    mu = silence_judge("g711_ulaw")
    assert mu is not None
    assert mu(ulaw_encode(np.zeros(160, dtype=np.int16)).tobytes())
    assert not mu(ulaw_encode((np.sin(np.arange(160) / 3) * 8000).astype(np.int16)).tobytes())
    # Opus: one decoder per call (state kept across frames), judged after decoding
    from clutchcall.engine.audio.opus import OpusEncoder

    enc, op = OpusEncoder(48000), silence_judge("opus")
    assert op is not None
    loud48 = (np.sin(np.arange(960) / 3) * 8000).astype(np.int16)
    assert [op(enc.encode(loud48)) for _ in range(3)] == [False] * 3
    quiet_after = [op(enc.encode(np.zeros(960, dtype=np.int16))) for _ in range(5)]
    assert all(quiet_after[2:]), quiet_after  # after the decoder's tail of the loud frames
    assert not op(b"\xff")  # undecodable: not silent
    assert silence_judge("l16") is None


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 120), st.booleans()), min_size=1, max_size=60),
    st.sampled_from([0, 20, 40]),
)
def test_sim_drives_the_buffer_like_the_ingress(frames: list[tuple[int, bool]], depth_ms: int) -> None:
    # in-order (TCP-like) arrivals with random extra delay (ms); speech flags at random
    arrival: list[float] = []
    for k, (extra, _sp) in enumerate(frames):
        a = round(0.02 * (k + 1) + 0.025 + extra / 1000.0, 6)
        arrival.append(max(a, arrival[-1]) if arrival else a)
    speech = [sp for _e, sp in frames]
    got, _b = drive(arrival, speech, depth_ms)
    sim, stats = jitter_releases(arrival, tuple(speech), F, depth_ms / 1000.0)
    assert stats.lost == 0 and not any(c for *_x, c in sim)
    assert [k for _t, k, _s, _c in sim] == [k for _t, k in got]
    assert [t for t, _k, _s, _c in sim] == pytest.approx([t for t, _k in got], abs=1e-9)
