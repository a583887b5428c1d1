"""The agent's phrase ends found in the audio the call core plays (engine/call/phrase.py)."""

from __future__ import annotations

import math

from clutchcall.engine.call.phrase import PhraseEnds

LOUD, QUIET = -20.0, -90.0


def test_a_pause_after_a_phrase_is_a_phrase_end_a_short_gap_is_not() -> None:
    ph = PhraseEnds(20)
    # 10 loud, 2 quiet (a stop consonant), 10 loud, 8 quiet (a pause), 5 loud
    levels = [LOUD] * 10 + [QUIET] * 2 + [LOUD] * 10 + [QUIET] * 8 + [LOUD] * 5
    idx = ph.pushed(levels)
    assert idx == list(range(35))
    # nothing sent yet: predicted at 1x from the next frame (index 0 due at t=1.0)
    assert math.isclose(ph.distance_ms(1.0, 0, 1.0), 22 * 20)
    assert math.isclose(ph.distance_ms(1.44, 0, 1.0), 0.0, abs_tol=1e-6)
    # sent: its send time counts (here a late send), the prediction is gone past it
    for k in range(23):
        ph.sent(k, 2.0 + k * 0.02)
    assert math.isclose(ph.distance_ms(2.5, 23, 2.46), 60.0, abs_tol=1e-6)
    # nothing known -> inf
    assert PhraseEnds(20).distance_ms(0.0, None, None) == math.inf


def test_a_clear_forgets_unsent_phrase_ends() -> None:
    ph = PhraseEnds(20)
    ph.pushed([LOUD] * 10 + [QUIET] * 8 + [LOUD] * 10 + [QUIET] * 8)
    for k in range(5):
        ph.sent(k, k * 0.02)
    ph.dropped(5)
    assert ph.distance_ms(0.1, None, None) == math.inf
