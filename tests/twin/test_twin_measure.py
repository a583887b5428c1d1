"""The twin's scoring (caller times -> turn latency) and the sim knobs it relies on."""

from __future__ import annotations

import math

import pytest

from clutchcall.engine.errors import ConfigError
from clutchcall.sim.calls import Call
from clutchcall.sim.config import ModelConfig, NetConfig, SimConfig
from clutchcall.sim.feed import feed_schedule
from clutchcall.sim.world import simulate_call
from clutchcall.twin import measure
from clutchcall.twin.cmd_twin_check import sim_config


def _rec(sent0: float, n: int, agent: list[float], commits: list[float]) -> dict:
    return {"sent": [sent0 + 0.02 * k for k in range(n)], "agent": agent,
            "controls": [[t, {"type": "commit", "turn": i + 1}] for i, t in enumerate(commits)]
            + [[0.0, {"type": "info"}]]}


def test_caller_turns_matches_commit_to_last_speech_frame_and_first_reply_frame() -> None:
    flags = [False] * 10 + [True] * 40 + [False] * 100 + [True] * 30 + [False] * 120
    t0 = 100.0
    end1, end2 = t0 + 0.02 * 49, t0 + 0.02 * 179
    rtt = 0.05
    # commit events reach the caller one end-of-turn silence + RTT after each last speech frame
    c1, c2 = end1 + 0.5 + rtt + 0.003, end2 + 0.5 + rtt + 0.004
    # agent frames: a stray one before the first commit could be answered, then the replies
    agent = [end1 + 0.1, end1 + 0.9, end1 + 0.92, end2 + 0.87]
    rows = measure.caller_turns(_rec(t0, 300, agent, [c1, c2]), flags, eot_ms=500, rtt_ms=50,
                                ttfa_ms=300)
    assert [round(r["end_of_speech_s"], 6) for r in rows] == [round(end1, 6), round(end2, 6)]
    assert rows[0]["turn_latency_ms"] == pytest.approx(900.0)
    assert rows[1]["turn_latency_ms"] == pytest.approx(870.0)
    assert rows[1]["edge_added_ms"] == pytest.approx(870.0 - 500 - 300 - 50)


def test_caller_turns_without_reply_is_nan() -> None:
    flags = [True] * 30 + [False] * 60
    rows = measure.caller_turns(_rec(0.0, 90, [], [0.58 + 0.5 + 0.06]), flags, eot_ms=500,
                                rtt_ms=50, ttfa_ms=300)
    assert len(rows) == 1 and math.isnan(rows[0]["turn_latency_ms"])


def test_percentiles_and_rel_errors() -> None:
    p = measure.percentiles([1.0, 2.0, 3.0, math.nan, math.inf])
    assert p == {"p50": 2.0, "p95": 2.9, "p99": 2.98}
    assert measure.percentiles([]) == {"p50": None, "p95": None, "p99": None}
    e = measure.rel_errors({"p50": 100.0, "p95": None}, {"p50": 90.0, "p95": 5.0})
    assert e == {"p50": 0.1, "p95": None}


def test_edge_vad_ulaw_round_trip_and_sim_call_tail() -> None:
    import numpy as np

    rng = np.random.default_rng(1)
    t = np.arange(8000) / 8000
    tone = (8000 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype("<i2")
    pcm = np.concatenate([np.zeros(4000, "<i2"), tone, (rng.normal(0, 5, 4000)).astype("<i2")]).tobytes()
    for codec in ("pcm16", "g711_ulaw"):
        flags = measure.edge_vad(pcm, 8000, codec)
        assert len(flags) == 100 and any(flags) and not all(flags)
    with pytest.raises(ValueError):
        measure.edge_vad(pcm, 8000, "opus")
    call = measure.sim_call("x", [True, False], 1.0)
    assert call.speech == (True, False) + (False,) * 50 and call.agent_speech == ()


def test_feed_schedule_playout_hold_keeps_the_schedule_after_a_loss() -> None:
    send = [0.02 * (k + 1) for k in range(6)]
    owd = 0.025
    arrival = [s + owd for s in send]
    arrival[2] = send[2] + owd + 0.07  # lost, retransmitted after its playout time
    speech = (True,) * 6
    out, skipped = feed_schedule(send, arrival, speech, 0.02, owd, 0.04, hold_s=0.04)
    assert skipped == 1 and [k for _t, k, _s in out] == [0, 1, 3, 4, 5]
    # every fed frame at exactly its playout time: the loss does not shift later frames
    for t, k, _s in out:
        assert t == pytest.approx(send[k] + owd + 0.04)
    # without a fixed playout the frames after the gap keep a one-frame lag
    out0, _ = feed_schedule(send, arrival, speech, 0.02, owd, 0.04)
    lag = [t - (send[k] + owd) for t, k, _s in out0 if k > 2]
    assert all(x == pytest.approx(0.02) for x in lag)


def _turn_call() -> Call:
    return Call.from_intervals("t", duration_ms=8000, caller_speech=[(500, 2500), (5000, 6200)])


def test_playout_delay_adds_to_turn_latency_exactly() -> None:
    call = _turn_call()
    model = ModelConfig(ttfa_sigma=0.0, ttfa_median_ms=300.0)
    lat = {}
    for depth in (0.0, 40.0):
        cfg = SimConfig(net=NetConfig.symmetric(rtt_ms=50, playout_delay_ms=depth, late_frame_ms=depth,
                                                media_clock=True), model=model)
        run = simulate_call(call, cfg)
        lat[depth] = [(t["first_audio_caller_s"] - t["end_of_speech_caller_s"]) * 1000 for t in run.turns]
    assert len(lat[0.0]) == 2
    assert [b - a for a, b in zip(lat[0.0], lat[40.0])] == pytest.approx([40.0, 40.0])
    with pytest.raises(ConfigError):
        NetConfig(playout_delay_ms=-1.0)


def test_media_clock_keeps_tcp_hol_delay_out_of_the_engine_clock() -> None:
    call = _turn_call()
    model = ModelConfig(ttfa_sigma=0.0, ttfa_median_ms=300.0)
    res = {}
    for media in (False, True):
        cfg = SimConfig(net=NetConfig.symmetric(transport="tcp", rtt_ms=60, loss=0.08, late_frame_ms=0.0,
                                                media_clock=media), model=model, seed=3)
        run = simulate_call(call, cfg)
        res[media] = [(t["commit_s"] - t["end_of_speech_caller_s"]) * 1000 for t in run.turns]
    # end of speech at the caller -> commit at the edge: at least RTT/2 + the end-of-turn
    # silence; with the media clock a head-of-line-blocked last frame no longer delays it
    assert len(res[True]) == len(res[False]) == 2
    assert all(m >= 530 - 1e-6 and m <= f + 1e-6 for m, f in zip(res[True], res[False]))
    # (the engine's clock is the production rule: media time + the smallest transit seen,
    # which includes the link's serialization of the frame, ~1.5 ms here)
    assert res[True][0] == pytest.approx(530.0, abs=3.0) and sum(res[True]) < sum(res[False])


def test_twin_sim_config_matches_the_embedded_model_and_ingress() -> None:
    q = sim_config("quic", rtt_ms=80, loss=0.02, ttfa_ms=250, replies_ms=[1800, 4200], frame_bytes=664, seed=2)
    assert q.net.transport == "quic" and q.net.playout_delay_ms == 40.0
    assert q.net.jitter_buffer == "playout" and q.net.quic_ack_every == 1
    assert q.net.uplink.rtt_ms == 80 and q.net.downlink.loss == 0.02
    assert q.model.ttfa_median_ms == 250 and q.model.ttfa_sigma == 0.0
    assert (q.model.reply_min_ms, q.model.reply_max_ms) == (1800, 4200)
    w = sim_config("ws", rtt_ms=80, loss=0.02, ttfa_ms=250, replies_ms=[1800], frame_bytes=400, seed=2)
    assert w.net.transport == "tcp" and w.net.playout_delay_ms == 0.0


def test_the_simulator_runs_the_ingress_jitter_buffer() -> None:
    """The simulator's uplink is the production JitterBuffer object, driven by its arrivals."""
    from clutchcall.sim.feed import jitter_releases

    f = 0.02
    owd = 0.025
    send = [f * (k + 1) for k in range(8)]
    speech = (True,) * 8
    # QUIC-like: frame 2 lost and retransmitted late, frame 3 arrives first -> concealed,
    # the schedule keeps its slots (depth 40 ms)
    arr = [s + owd for s in send]
    arr[2] += 0.07
    out, stats = jitter_releases(arr, speech, f, 0.04)
    assert stats.lost == 1 and stats.late == 1
    assert [k for _t, k, _s, c in out if not c] == [0, 1, 3, 4, 5, 6, 7]
    assert [(k, s) for _t, k, s, c in out if c] == [(2, False)]  # concealed: not speech
    assert all(t == pytest.approx(send[k] + owd + 0.04) for t, k, _s, _c in out)
    # TCP-like head-of-line stall of 70 ms from frame 2 on (depth 0): re-anchored on frame 2,
    # every later frame keeps the lag; a shorter later stall does not add to it
    arr = [s + owd for s in send]
    for k in range(2, 8):
        arr[k] = max(arr[k], send[2] + owd + 0.07)
    arr[6] = max(arr[6], send[6] + owd + 0.03)
    out, stats = jitter_releases(arr, speech, f, 0.0)
    assert stats.lost == 0 and stats.reanchored == 1
    lag = [t - (send[k] + owd) for t, k, _s, _c in out]
    assert lag[:2] == pytest.approx([0.0, 0.0]) and lag[2:] == pytest.approx([0.07] * 6)
    # anchored on the first frame received: frames before it are late
    arr = [s + owd for s in send]
    arr[0] += 0.05
    out, stats = jitter_releases(arr, speech, f, 0.0)
    assert stats.late == 1 and out[0][1] == 1
    assert jitter_releases([], (), f, 0.0)[0] == []
    assert jitter_releases([math.inf], (True,), f, 0.0)[0] == []


def test_playout_buffer_in_the_world_turns_a_tcp_stall_into_turn_latency() -> None:
    call = _turn_call()
    model = ModelConfig(ttfa_sigma=0.0, ttfa_median_ms=300.0)
    lat = {}
    for jb in ("adaptive", "playout"):
        net = NetConfig.symmetric(transport="tcp", rtt_ms=50, loss=0.05, late_frame_ms=0.0,
                                  jitter_buffer=jb)
        run = simulate_call(call, SimConfig(net=net, model=model, seed=2))
        lat[jb] = [(t["first_audio_caller_s"] - t["end_of_speech_caller_s"]) * 1000 for t in run.turns]
    assert len(lat["playout"]) == 2
    assert all(v >= 850 - 1e-6 for v in lat["playout"])
    # the playout buffer never shrinks: the second turn is no faster than the first's lag allows
    assert max(lat["playout"]) > 851 and sum(lat["playout"]) >= sum(lat["adaptive"]) - 1e-6
    with pytest.raises(ConfigError):
        NetConfig(jitter_buffer="fifo")
