"""What the ``prosodic`` end-of-turn rule reads at each pause of a recorded call (issue 16).

Run (from the checkout root)::

    python -m clutchcall demo --json --seed 1 --trace-dir /tmp/demo
    python notebooks/demo_eot_probe.py /tmp/demo/traces/demo-call.parquet [--min-speech-ms 300] \\
        [--final-pct 90 --final-ms 500 --neutral-ms 0]

The trace's engine inputs are fed to a fresh engine with the trace's config but the
``prosodic`` rule (and the given knobs); every pause the rule is asked about is printed with
its evidence (``PauseEvidence``, the final burst's ``FinalProsody``, P(end), the plateau test)
and the wait the rule gives, followed by the engine's Speculate / Release / Commit actions.
The engine is pure, so the evidence and the waits are exactly what the rule reads on that
call's frames. The printed actions are only meaningful up to the first pause whose wait
differs from the recorded run's: the trace's inputs also carry that run's agent playout
(e.g. a Release recorded at 500 ms replays as a Retract when the wait is 700 ms).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from clutchcall.engine import endpoint
from clutchcall.engine.call.driver import EngineDriver
from clutchcall.engine.call.replay import split_rows
from clutchcall.traces.recorded import read_trace


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--min-speech-ms", type=int, default=0, help="print pauses of turns with this much speech")
    ap.add_argument("--final-pct", type=int, default=None)
    ap.add_argument("--final-ms", type=int, default=None)
    ap.add_argument("--neutral-ms", type=int, default=None)
    a = ap.parse_args()
    tr = read_trace(a.trace)
    knobs: dict[str, Any] = {"end_of_turn_rule": "prosodic"}
    for k, v in (("end_of_turn_final_pct", a.final_pct), ("end_of_turn_final_ms", a.final_ms),
                 ("end_of_turn_neutral_ms", a.neutral_ms)):
        if v is not None:
            knobs[k] = v
    cfg = dataclasses.replace(tr.header.config, **knobs)
    asked: list[tuple[endpoint.PauseEvidence, int]] = []
    plain = endpoint.ProsodicRule.silence_ms

    def spy(self: endpoint.ProsodicRule, ev: endpoint.PauseEvidence) -> int:
        ms = plain(self, ev)
        asked.append((ev, ms))
        return ms

    endpoint.ProsodicRule.silence_ms = spy  # type: ignore[method-assign]
    rule = endpoint.ProsodicRule(cfg)
    inputs, _, _ = split_rows(tr.rows)
    driver = EngineDriver(config=cfg, policy=None)
    for inp in inputs:
        outs = driver.feed(inp)
        for ev, ms in asked:
            if ev.turn_speech_ms < a.min_speech_ms:
                continue
            line = (f"t={inp.time:.2f} speech={ev.turn_speech_ms} burst={ev.burst_ms} answer={ev.answer} "
                    f"-> wait {ms} ms")
            f = ev.final
            if f is not None:
                line += (f" | P(end)={rule.p_end(f):.2f} slope={f.slope_st_per_s:.1f} st/s "
                         f"drop={f.drop_st:.2f} st rel_f0={f.rel_f0_st:.2f} st rel_db={f.rel_db:.2f} dB "
                         f"range={f.range_st:.2f} st voiced={f.voiced} plateau={rule.plateau(f)}")
            print(line)
        asked.clear()
        for o in outs:
            if type(o).__name__ in ("Speculate", "Release", "Retract", "Commit"):
                print(f"    {type(o).__name__} at t={inp.time:.2f}")


if __name__ == "__main__":
    main()
