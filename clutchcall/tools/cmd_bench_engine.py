"""``clutchcall bench engine``: how fast the turn engine steps, on a realistic mix.

Drives :class:`TurnEngine` through scripted calls (speech, pauses, backchannels, agent speech,
barge-ins; :mod:`clutchcall.tools.scenario`) with the full drive loop (feed, drain, re-arm)
and reports the median over several runs of frames per second and microseconds per frame step.
A baseline measured in the same process -- the bare loop over the same inputs calling a no-op --
is reported too, so the engine's own cost can be told from the interpreter's. The same call
is also run with per-frame acoustic features and the ``evidence`` policy with soft barge-in
(``frames_per_s_features``: issue 15 keeps it >= 1 M/s), and with the product's whole turn
config on voiced frames (``frames_per_s_product``: the prosodic end-of-turn rule's pitch
track and speculation too -- the product default's hot path since 2026-12-08).

Two drive paths, the same outputs (tests/engine/test_batch.py): ``frames_per_s`` /
``frames_per_s_features`` time the per-frame API (one input at a time, as the call core of
the real-time shell and of the simulator feeds it: a caller frame through
:meth:`EngineDriver.caller_frame`, anything else through :meth:`EngineDriver.feed`; the
headline);
``frames_per_s_batch`` / ``frames_per_s_features_batch`` time the offline drivers' batch path
-- the call's caller frames as columns (:func:`~clutchcall.tools.scenario.to_columns`, prepared before the clock starts, as
the inputs themselves are), fed by :meth:`EngineDriver.feed_columns
<clutchcall.engine.call.EngineDriver.feed_columns>`, which hands every run of frames in which
nothing can be decided to :meth:`TurnEngine.caller_frames_quiet` in one call and steps the
rest. Figures are wall-clock medians over ``--runs``; the machine's load moves them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from clutchcall.engine.audio.features import FrameFeatures
from clutchcall.engine.call.inputs import CALLER_FRAME, EngineInput
from clutchcall.engine.config import PRODUCT_TURN, TurnConfig
from clutchcall.engine.turn import TurnEngine
from clutchcall.tools.scenario import run_columns, run_inputs, scripted_call, to_columns


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=600.0, help="call seconds per run")
    parser.add_argument("--runs", type=int, default=7, help="runs (the median is reported)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _baseline(inputs: list[object]) -> float:
    sink: list[object] = []
    t0 = time.perf_counter()
    for inp in inputs:
        deadline = None
        if deadline is not None:
            pass
        if getattr(inp, "kind", None) == CALLER_FRAME:
            sink.append(inp)
        sink.clear()
    return time.perf_counter() - t0


def _with_features(inputs: list[EngineInput], *, voiced: bool = False) -> list[EngineInput]:
    """Return ``inputs`` with per-frame acoustic features on every caller frame (a loud
    frame for speech, a quiet one for silence). ``voiced``: speech frames also carry voicing
    and a pitch contour (a slow fall and rise around 140 Hz), which the ``prosodic``
    end-of-turn rule tracks."""
    quiet = FrameFeatures(level_db=-60.0, rel_db=-38.0, snr_db=1.0)
    loud = ([FrameFeatures(level_db=-22.0, rel_db=-1.0, snr_db=30.0, voicing=0.8,
                           f0_hz=140.0 * 2 ** ((k - 12) / 60), rel_f0_st=(k - 12) / 5)
             for k in range(25)] if voiced else [FrameFeatures(level_db=-22.0, rel_db=-1.0, snr_db=30.0)])
    return [EngineInput.frame(i.time, speech=bool(i.speech), duration_ms=i.duration_ms or 20,
                              seq=i.seq, features=loud[k % len(loud)] if i.speech else quiet)
            if i.kind == CALLER_FRAME else i for k, i in enumerate(inputs)]


def measure_features(seconds: float = 600.0, runs: int = 7, *, product: bool = False
                     ) -> dict[str, float | int]:
    """Return frames/s of the engine with per-frame features and the ``evidence`` policy
    with soft barge-in (pause), batch and per-frame (keys ``*_features``). ``product``: the
    product's whole turn config instead (:data:`~clutchcall.engine.config.PRODUCT_TURN`:
    also the prosodic end-of-turn rule, fed voiced frames with a pitch contour, and
    speculation; keys ``*_product``)."""
    inputs = _with_features(scripted_call(seed=7, seconds=seconds), voiced=product)
    columns = to_columns(inputs)
    frames = sum(1 for i in inputs if i.kind == CALLER_FRAME)
    cfg = PRODUCT_TURN if product else TurnConfig(policy="evidence", barge_yield="pause")
    tag = "product" if product else "features"
    times, step = [], []
    for _ in range(runs):  # the two paths interleaved, so load hits both alike
        engine = TurnEngine(cfg)
        t0 = time.perf_counter()
        run_columns(engine, columns)
        times.append(time.perf_counter() - t0)
        engine = TurnEngine(cfg)
        t0 = time.perf_counter()
        run_inputs(engine, inputs)
        step.append(time.perf_counter() - t0)
    med = statistics.median(times)
    med_step = statistics.median(step)
    return {f"frames_per_s_{tag}": round(frames / med_step),
            f"us_per_frame_{tag}": round(med_step / frames * 1e6, 3),
            f"frames_per_s_{tag}_batch": round(frames / med),
            f"us_per_frame_{tag}_batch": round(med / frames * 1e6, 3)}


def measure(seconds: float = 600.0, runs: int = 7) -> dict[str, float | int]:
    """Return the benchmark figures as a dict (see the module docstring)."""
    inputs = scripted_call(seed=7, seconds=seconds)
    columns = to_columns(inputs)
    frames = sum(1 for i in inputs if i.kind == CALLER_FRAME)
    times, base, step = [], [], []
    n_out = 0
    for _ in range(runs):
        engine = TurnEngine()
        t0 = time.perf_counter()
        outs = run_columns(engine, columns)
        times.append(time.perf_counter() - t0)
        n_out = len(outs)
        engine = TurnEngine()
        t0 = time.perf_counter()
        run_inputs(engine, inputs)
        step.append(time.perf_counter() - t0)
        base.append(_baseline(list(inputs)))
    med = statistics.median(times)
    med_base = statistics.median(base)
    med_step = statistics.median(step)
    return {
        "frames": frames,
        "outputs": n_out,
        "runs": runs,
        "frames_per_s": round(frames / med_step),
        "us_per_frame": round(med_step / frames * 1e6, 3),
        "baseline_loop_us_per_frame": round(med_base / frames * 1e6, 3),
        "engine_over_baseline": round(med_step / med_base, 1),
        "frames_per_s_batch": round(frames / med),
        "us_per_frame_batch": round(med / frames * 1e6, 3),
    }


def run(args: argparse.Namespace) -> int:
    res = measure(args.seconds, args.runs)
    res.update(measure_features(args.seconds, args.runs))
    res.update(measure_features(args.seconds, args.runs, product=True))
    if args.json:
        print(json.dumps(res))
    else:
        print(f"turn engine: {res['frames']} frames/run ({args.seconds:.0f} call-s), median of {res['runs']} runs")
        print(f"  {res['frames_per_s']:,} frames/s   {res['us_per_frame']} us per frame step "
              "(per-frame API, as the shells feed it)")
        print(f"  bare loop over the same inputs: {res['baseline_loop_us_per_frame']} us/frame "
              f"(engine = {res['engine_over_baseline']}x that)")
        print(f"  with per-frame features, evidence policy, soft barge-in: "
              f"{res['frames_per_s_features']:,} frames/s")
        print(f"  the product's turn config (+ prosodic end of turn, speculation), voiced frames: "
              f"{res['frames_per_s_product']:,} frames/s")
        print(f"  batch path (quiet runs in one call): {res['frames_per_s_batch']:,} frames/s, "
              f"with features {res['frames_per_s_features_batch']:,} frames/s, product "
              f"{res['frames_per_s_product_batch']:,} frames/s")
    return 0
