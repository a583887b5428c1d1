"""The simulated world end to end: engine drive loop, model, agent speech, scoring."""

from __future__ import annotations

import math

import pytest

from clutchcall.engine import TurnConfig
from clutchcall.sim.calls import Call, Segment, synthetic_call
from clutchcall.sim.config import ModelConfig, NetConfig, SimConfig
from clutchcall.sim.feed import feed_schedule
from clutchcall.sim.metrics import summarize, tables
from clutchcall.sim.presets import PRESETS
from clutchcall.sim.world import simulate_call

FIXED_MODEL = ModelConfig(ttfa_sigma=0.0, ttfa_median_ms=300)


def _cfg(**kw: object) -> SimConfig:
    net = kw.pop("net", NetConfig.symmetric(rtt_ms=50))
    return SimConfig(net=net, model=kw.pop("model", FIXED_MODEL), **kw)  # type: ignore[arg-type]


def _seg(a: int, b: int, kind: str, expect: str) -> Segment:
    return Segment(start_ms=a, end_ms=b, kind=kind, expect=expect)


def test_turn_latency_is_silence_plus_model_plus_network() -> None:
    call = Call.from_intervals("t", duration_ms=6000, caller_speech=[(1000, 2000)],
                               segments=[_seg(1000, 2000, "turn", "reply")])
    cfg = _cfg()
    run = simulate_call(call, cfg)
    assert [a[1] for a in run.actions] == ["prime", "commit"]
    t = tables([run], cfg)["turns"].row(0, named=True)
    # 500 ms end-of-turn + 300 ms first audio + 2 x 5 ms model leg + 2 x 25 ms caller leg
    assert t["turn_latency_ms"] == pytest.approx(860.0)
    assert t["commit_delay_ms"] == pytest.approx(525.0)
    assert t["edge_added_ms"] == pytest.approx(0.0, abs=1e-6)
    assert t["turn_latency_edge_ms"] == pytest.approx(810.0)


def test_no_prefill_first_audio_grows_with_the_turn() -> None:
    call = Call.from_intervals("t", duration_ms=9000, caller_speech=[(1000, 4000)])
    m = ModelConfig(ttfa_sigma=0.0, ttfa_median_ms=300, prefill=False, no_prefill_ms_per_s=100)
    t = tables([simulate_call(call, _cfg(model=m))], _cfg(model=m))["turns"].row(0, named=True)
    assert t["ttfa_ms"] == pytest.approx(300 + 3.0 * 100)


def _barge_call(burst_ms: int, kind: str, expect: str) -> Call:
    return Call.from_intervals(
        "b", duration_ms=12000, caller_speech=[(500, 1500), (5000, 5000 + burst_ms)],
        agent_speech=[(3000, 9000)],
        segments=[_seg(500, 1500, "turn", "reply"), _seg(5000, 5000 + burst_ms, kind, expect)])


def test_backchannel_over_agent_does_not_cancel() -> None:
    cfg = _cfg()
    run = simulate_call(_barge_call(200, "backchannel", "ignore"), cfg)
    assert run.cancels == []
    s = summarize(tables([run], cfg))
    assert s["false_barge_ins"] == 0 and s["backchannel_wakeups"] == 0


def test_interruption_cancels_after_confirm_and_stops_the_agent_at_the_caller() -> None:
    cfg = _cfg()
    run = simulate_call(_barge_call(1200, "interruption", "yield"), cfg)
    assert len(run.cancels) == 1
    seg = tables([run], cfg)["segments"].row(1, named=True)
    assert seg["outcome"] == "ok" and seg["cancelled"]
    # 300 ms of speech to confirm, the frame's uplink 25 ms, the stop message's downlink 25 ms
    assert seg["barge_latency_ms"] == pytest.approx(350.0)


def test_naive_preset_cancels_on_a_backchannel_and_wakes_the_model() -> None:
    call = _barge_call(200, "backchannel", "ignore")
    cfg = _cfg(turn=PRESETS["naive"])
    s = summarize(tables([simulate_call(call, cfg)], cfg))
    assert s["false_barge_ins"] == 1
    assert s["backchannel_wakeups"] == 1
    assert s["false_barge_in_rate"] == 1.0


def test_short_answer_missed_by_the_backchannel_filter() -> None:
    call = Call.from_intervals("s", duration_ms=5000, caller_speech=[(1000, 1300)],
                               segments=[_seg(1000, 1300, "short_answer", "reply")])
    for turn, missed in ((TurnConfig(), 1), (TurnConfig(response_min_speech_ms=200), 0)):
        cfg = _cfg(turn=turn)
        s = summarize(tables([simulate_call(call, cfg)], cfg))
        assert s["missed_short_answers"] == missed and s["missed_reply_rate"] == missed


def test_feed_schedule_jitter_buffer() -> None:
    send = [0.02, 0.04, 0.06, 0.08]
    speech = (True, True, False, False)
    # frame 1 lost for good: skipped at its deadline; the speech behind it waits for that
    arr = [0.045, math.inf, 0.085, 0.105]
    out, skipped = feed_schedule(send, arr, (True,) * 4, 0.02, 0.025, 0.06)
    assert skipped == 1 and [k for _t, k, _s in out] == [0, 2, 3]
    assert out[1][0] == pytest.approx(0.125)  # frame 1's deadline 0.04 + 0.025 + 0.06
    assert out[2][0] == pytest.approx(0.145)  # 1x after it, still before its own deadline
    # silence behind the gap is dropped instead, so the buffer catches up at once
    out, skipped = feed_schedule(send, arr, speech, 0.02, 0.025, 0.06)
    assert skipped == 3 and [k for _t, k, _s in out] == [0]
    # over TCP the late speech frame is fed, late, and the silence behind it dropped
    out, skipped = feed_schedule(send, [0.045, 0.2, 0.2, 0.2], speech, 0.02, 0.025, 0.06,
                                 skip_late_speech=False)
    assert [k for _t, k, _s in out] == [0, 1]
    assert skipped == 2


def test_every_transport_runs_a_call() -> None:
    call = synthetic_call(5, 40)
    for transport in ("quic", "tcp", "quic-exact"):
        cfg = _cfg(net=NetConfig.symmetric(transport=transport, rtt_ms=60, loss=0.02))
        s = summarize(tables([simulate_call(call, cfg)], cfg))
        assert s["commits"] > 0 and s["turn_latency_ms_p50"] is not None, transport


def test_quic_and_tcp_agree_without_loss() -> None:
    calls = [synthetic_call(s, 60) for s in range(2)]
    res = {}
    for transport in ("quic", "tcp"):
        cfg = SimConfig(net=NetConfig.symmetric(transport=transport, rtt_ms=80))
        t = tables([simulate_call(c, cfg) for c in calls], cfg)
        res[transport] = t["turns"]["turn_latency_ms"].to_list()
    assert res["quic"] == pytest.approx(res["tcp"])


def test_with_loss_tcp_tail_latency_rises_above_quic() -> None:
    calls = [synthetic_call(s, 120) for s in range(4)]
    p99 = {}
    for transport in ("quic", "tcp"):
        cfg = SimConfig(net=NetConfig.symmetric(transport=transport, rtt_ms=80, loss=0.03))
        s = summarize(tables([simulate_call(c, cfg) for c in calls], cfg))
        p99[transport] = (s["turn_latency_ms_p99"], s["edge_added_ms_p99"])
    assert p99["tcp"][0] > p99["quic"][0]
    assert p99["tcp"][1] > p99["quic"][1]


def test_planned_answer_starts_at_the_models_first_audio_and_keeps_its_length() -> None:
    # the corpus places the agent's answer at a human pace (200 ms after the turn)
    call = Call.from_intervals("r", duration_ms=9000, caller_speech=[(500, 1500)],
                               agent_speech=[(1700, 4700)],
                               segments=[_seg(500, 1500, "turn", "reply")])
    run = simulate_call(call, _cfg())
    (start, end), = run.agent_playing
    # commit at 1.5 + 0.025 + 0.5; first audio 0.3 + 2 x 0.005 later (edge times)
    assert start == pytest.approx(2.335)
    assert end - start == pytest.approx(3.0)


def test_a_missed_reply_leaves_the_planned_answer_unplayed() -> None:
    call = Call.from_intervals("m", duration_ms=6000, caller_speech=[(500, 800)],
                               agent_speech=[(1000, 3000)],
                               segments=[_seg(500, 800, "short_answer", "reply")])
    run = simulate_call(call, _cfg())
    assert run.turns == [] and run.agent_playing == []


def test_unanswerable_agent_speech_plays_at_its_planned_time() -> None:
    call = Call.from_intervals("g", duration_ms=5000, caller_speech=[],
                               agent_speech=[(1000, 2500)])
    run = simulate_call(call, _cfg())
    assert run.agent_playing == [[pytest.approx(0.975), pytest.approx(2.475)]]
