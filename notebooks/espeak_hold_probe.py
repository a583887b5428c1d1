"""Probe: how espeak-ng ends a phrase -- "." vs "?" vs the hold cues of corpus version 3.

Run: ``python notebooks/espeak_hold_probe.py``. For each ending (traces/generator.py, "Holds"),
the median over 3 voices x 6 phrases of the pitch slope over the last 300 ms ending at the
clip's last voiced frame (semitones per second, ``engine/audio/features.py`` ``pitch_track``
and ``f0_slope_st_per_s``) and of the last 5 voiced frames' pitch relative to the clip's median
pitch (semitones). An exploratory check of the corpus's speech, not a product metric.
"""

from __future__ import annotations

import numpy as np

from clutchcall.engine.audio.features import f0_slope_st_per_s, pitch_track
from clutchcall.traces import speech as sp

PHRASES = ("can you tell me when the store opens tomorrow", "is there any way to get a refund",
           "how much would it cost to upgrade", "could you send me a copy of the invoice",
           "the package never arrived", "I need to change my delivery address")
VOICES = (("en-us+m3", 150, 50), ("en-gb+f2", 170, 40), ("en-029+m7", 180, 68))
ENDINGS = (".", "?", ",", ", and,", ", so,", ", um,", ", uh,")


def main() -> None:
    """Print the table."""
    for end in ENDINGS:
        slopes, finals = [], []
        for voice, wpm, pitch in VOICES:
            for text in PHRASES:
                pcm = (sp.espeak(text + end, voice, wpm, pitch) * 32767).astype(np.int16)
                _, f0 = pitch_track(pcm, sp.SPEECH_RATE, 20)
                idx = np.flatnonzero(f0 > 0)
                last = int(idx[-1])
                slopes.append(f0_slope_st_per_s(f0[max(0, last - 14):last + 1]))
                finals.append(12 * np.log2(np.median(f0[idx[-5:]]) / np.median(f0[idx])))
        print(f"{end!r:9} final slope {np.median(slopes):+6.1f} st/s   "
              f"final vs median {np.median(finals):+5.1f} st")


if __name__ == "__main__":
    main()
