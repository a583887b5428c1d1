"""Scoring of replies against the caller's speech: premature replies and speculation counters.

Theory of operation: one pure function per simulated call, :func:`score_replies`, reads the
:class:`~clutchcall.sim.world.CallRun` (each committed or released turn with when its reply's
first audio reached the caller) and the call's own speech (the VAD frames on the caller's
timeline, and the labelled segments). Definitions, written where they are computed:

* a **released reply** is a committed turn (``Commit``, or a ``Release`` of a speculation)
  whose reply audio reached the caller (``first_audio_caller_s`` finite);
* it is **premature** if the caller was only pausing: the caller starts a new burst of speech
  after the turn's end of speech and no later than ``PREMATURE_WINDOW_S`` (1 s) after the
  reply's first audio reached the caller, and, on a labelled call, that burst continues the
  *same* labelled segment the turn's speech belonged to (the caller's turn was not over; a
  backchannel, a noise, or an interruption of a reply that came late is not pausing). On an
  unlabelled call every new burst counts.
  ``premature_reply_rate`` = premature / released replies. A *retracted* speculation played
  nothing and is never premature (it is counted in ``speculations_retracted``);
* turn latency from the caller's end of speech (``turn_latency_from_speech_end_ms_*``) has one
  definition, in :mod:`clutchcall.sim.metrics` (the eval's scoring), which counts released
  speculations like commits;
* **speculation counters**: ``speculations_started`` / ``_released`` / ``_retracted`` and
  ``speculation_wasted_model_s`` (model time spent on retracted speculations, from
  ``Speculate`` to ``Retract``).
"""

from __future__ import annotations

import math
from typing import Any

from clutchcall.sim.world import CallRun

PREMATURE_WINDOW_S = 1.0

SPECULATION_COUNTS = ("released_replies", "premature_replies", "speculations_started",
                      "speculations_released", "speculations_retracted")
"""Per-call integer counts added to the calls table."""


def _onsets(speech: tuple[bool, ...], frame_s: float) -> list[float]:
    """Return the caller times (s) at which each VAD burst starts."""
    out, prev = [], False
    for k, sp in enumerate(speech):
        if sp and not prev:
            out.append(k * frame_s)
        prev = sp
    return out


def released_turns(run: CallRun) -> list[tuple[dict[str, Any], bool]]:
    """Return each released reply of a simulated call (its turn record) with whether it was
    premature (the definitions in the module docstring)."""
    call = run.call
    onsets = _onsets(call.speech, call.frame_ms / 1000.0)
    turns = [(s.start_ms / 1000.0 - 0.06, s.end_ms / 1000.0) for s in call.segments
             if s.expect != "ignore"]
    out = []
    for t in run.turns:
        heard = t["first_audio_caller_s"]
        if not math.isfinite(heard):
            continue
        end = t["end_of_speech_caller_s"]
        until = heard + PREMATURE_WINDOW_S
        if call.segments:
            # the labelled segment the turn's speech belongs to, if it goes on after it
            going_on = [b for a, b in turns if a <= end < b]
            until = min([until, *going_on]) if going_on else -math.inf
        out.append((t, any(end < o <= until for o in onsets)))
    return out


def score_replies(run: CallRun) -> dict[str, Any]:
    """Return one simulated call's counts: :data:`SPECULATION_COUNTS` plus
    ``speculation_wasted_model_s``; see the module docstring."""
    replies = released_turns(run)
    released, premature = len(replies), sum(p for _, p in replies)
    spec = run.speculation
    counts: dict[str, Any] = {
        "released_replies": released, "premature_replies": premature,
        "speculations_started": int(spec["started"]), "speculations_released": int(spec["released"]),
        "speculations_retracted": int(spec["retracted"]),
        "speculation_wasted_model_s": float(spec["wasted_model_s"]),
    }
    return counts
