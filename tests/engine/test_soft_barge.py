"""Soft barge-in (issue 15): Duck / Pause while a barge-in is pending, Restore / Resume when it
is dismissed, Cancel (truncated at the audio actually heard) when it is confirmed.

Hypothesis drives random caller scripts and agent timelines through the engine with every
``barge_yield`` mode and checks the pairing and timing rules; hand-driven cases pin the exact
outputs and ``agent_played_ms``."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clutchcall.engine import Cancel, TurnConfig, TurnEngine
from clutchcall.engine.actions import Duck, Pause, Restore, Resume

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

runs = st.lists(st.tuples(st.booleans(), st.integers(1, 60)), min_size=1, max_size=25)
toggles = st.lists(st.integers(0, 1500), max_size=10, unique=True).map(sorted)
configs = st.builds(
    TurnConfig,
    barge_yield=st.sampled_from(["none", "duck", "pause"]),
    barge_yield_ms=st.integers(0, 400),
    barge_confirm_ms=st.integers(0, 900),
    burst_gap_ms=st.integers(0, 200),
)


def drive(cfg: TurnConfig, script: list[tuple[bool, int]], agent: list[int]) -> list[object]:
    """Play 20 ms frames of ``script``; toggle agent audio at the frame indices in ``agent``
    (never while paused: a paused playout does not finish). Return every output."""
    eng = TurnEngine(cfg)
    out: list[object] = []
    playing = paused = False
    k = 0
    for speech, n in script:
        for _ in range(n):
            now = round((k + 1) * 0.02, 6)
            if k in agent and not paused:
                if playing:
                    eng.agent_audio_finished(round(k * 0.02, 6))
                else:
                    eng.agent_audio_started(round(k * 0.02, 6))
                playing = not playing
                out += eng.drain()
            eng.caller_frame(now, speech=speech, duration_ms=20)
            for o in eng.drain():
                out.append(o)
                if isinstance(o, Pause):
                    paused = True
                elif isinstance(o, (Resume, Cancel)):
                    paused = False
                    if isinstance(o, Cancel):
                        eng.agent_audio_finished(now)  # the shell stops the agent at once
                        playing = False
                        out += eng.drain()
            k += 1
    eng.handle_timer(k * 0.02 + 5.0)
    out += eng.drain()
    return out


@SETTINGS
@given(cfg=configs, script=runs, agent=toggles)
def test_every_yield_is_closed_once_and_none_never_yields(cfg: TurnConfig, script: list[tuple[bool, int]],
                                                         agent: list[int]) -> None:
    out = drive(cfg, script, agent)
    open_kind: str | None = None
    for o in out:
        if isinstance(o, (Duck, Pause)):
            assert cfg.barge_yield != "none"
            assert (cfg.barge_yield == "duck") == isinstance(o, Duck)
            assert open_kind is None, "a second yield before the first was closed"
            open_kind = o.kind
        elif isinstance(o, Restore):
            assert open_kind == "duck"
            open_kind = None
        elif isinstance(o, Resume):
            assert open_kind == "pause"
            open_kind = None
        elif isinstance(o, Cancel):
            open_kind = None


@SETTINGS
@given(cfg=configs, script=runs, agent=toggles)
def test_the_yield_mode_never_changes_when_the_agent_is_cancelled(
        cfg: TurnConfig, script: list[tuple[bool, int]], agent: list[int]) -> None:
    # ducking is a playout decision only: the Cancels (and commits) are the same as without
    # it, at the same times (a pause is not: a paused agent cannot finish meanwhile)
    if cfg.barge_yield == "pause":
        cfg = cfg.replace(barge_yield="duck")
    base = [o for o in drive(cfg.replace(barge_yield="none"), script, agent)
            if o.kind in ("cancel", "commit", "prime")]
    soft = [o for o in drive(cfg, script, agent) if o.kind in ("cancel", "commit", "prime")]
    assert [(o.kind, o.time) for o in soft] == [(o.kind, o.time) for o in base]


def _barge(cfg: TurnConfig, speech_frames: int) -> list[object]:
    eng = TurnEngine(cfg)
    eng.agent_audio_started(0.0)
    out: list[object] = []
    for k in range(60):
        eng.caller_frame(round((k + 1) * 0.02, 6), speech=10 <= k < 10 + speech_frames,
                         duration_ms=20)
        out += [o for o in eng.drain() if o.kind != "append"]
    return out


def test_duck_then_restore_on_a_backchannel() -> None:
    out = _barge(TurnConfig(barge_yield="duck", barge_yield_ms=100, duck_db=9), 8)
    kinds = [o.kind for o in out]  # type: ignore[attr-defined]
    assert kinds == ["barge_armed", "duck", "barge_dismissed", "restore", "backchannel_filtered"]
    duck = out[1]
    assert isinstance(duck, Duck) and duck.gain_db == 9 and duck.time == 0.3  # 5th speech frame


def test_pause_then_cancel_truncates_at_the_audio_heard() -> None:
    out = _barge(TurnConfig(barge_yield="pause", barge_yield_ms=60, barge_confirm_ms=300), 30)
    kinds = [o.kind for o in out]  # type: ignore[attr-defined]
    assert kinds[:3] == ["barge_armed", "pause", "barge_confirmed"]
    cancel = next(o for o in out if isinstance(o, Cancel))
    # the agent started at 0 and was paused at 0.26 s (3rd speech frame): 260 ms heard,
    # though the cancel came at 0.5 s
    assert cancel.time == 0.5 and cancel.agent_played_ms == 260


def test_pause_resume_then_the_next_cancel_excludes_the_pause() -> None:
    eng = TurnEngine(TurnConfig(barge_yield="pause", barge_yield_ms=0, barge_confirm_ms=300,
                                burst_gap_ms=100))
    eng.agent_audio_started(0.0)
    speech = [False] * 10 + [True] * 5 + [False] * 20 + [True] * 20
    outs = []
    for k, s in enumerate(speech):
        eng.caller_frame(round((k + 1) * 0.02, 6), speech=s, duration_ms=20)
        outs += [o for o in eng.drain() if o.kind != "append"]
    kinds = [o.kind for o in outs]
    assert kinds.count("pause") == 2 and kinds.count("resume") == 1 and kinds[-1] == "turn_started"
    first_pause = next(o for o in outs if isinstance(o, Pause))
    resume = next(o for o in outs if isinstance(o, Resume))
    cancel = next(o for o in outs if isinstance(o, Cancel))
    second_pause = [o for o in outs if isinstance(o, Pause)][1]
    heard = (second_pause.time - 0.0) - (resume.time - first_pause.time)
    assert cancel.agent_played_ms == round(heard * 1000)


def test_threshold_preset_keeps_the_seed_behaviour() -> None:
    assert TurnConfig().barge_yield == "none"
    assert [o.kind for o in _barge(TurnConfig(), 8)] == [  # type: ignore[attr-defined]
        "barge_armed", "barge_dismissed", "backchannel_filtered"]
