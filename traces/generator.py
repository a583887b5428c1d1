"""The corpus generator: deterministic labelled calls made from real speech.

Theory of operation: :func:`build_corpus` writes ``N`` labelled calls (``NAME.wav`` +
``NAME.json``, see ``traces/FORMAT.md``) and a ``MANIFEST.json`` into a directory. Call ``i``
of seed ``S`` depends only on ``(S, i)``: its random numbers come from
``numpy.random.default_rng([S, i])``, its speech from espeak-ng (deterministic for the same
arguments) and from the pinned CMU ARCTIC recordings, so the same seed gives byte-identical
files.

One call is built in three steps:

1. *Script* (:func:`plan_call`): a conversation on a millisecond timeline. The caller speaks
   (a ``turn`` of 1-3 phrases (65/30/5 %) with mid-turn pauses, or a ``short_answer``); after a gap the
   agent replies (an interval in ``agent_speech``; its audio is not in the caller channel);
   while the agent talks the caller may ``backchannel`` (expect ``ignore``) or break in with
   an ``interruption`` (expect ``yield``; since v3 usually followed by more speech, which its
   segment spans: the caller took the floor); between events a labelled ``noise`` burst (a
   knock, a cough-like burst, a click) may occur. The agent may open the call with a
   greeting. Timing is drawn from published conversation statistics (see FORMAT.md):
   response gaps ~ N(200 ms, 180 ms) clipped to 50-1200 ms, mid-turn pauses lognormal with a
   median of 500 ms and a 95th percentile near 1.9 s, backchannels only during agent speech
   and < 1 s.
2. *Render*: each caller clip is levelled (one speaker level per call, +-2 dB per clip) and
   mixed into a clean 16 kHz float signal; the labels are exactly where the clips were put
   (``start_ms``/``end_ms`` are the clip's trimmed extent, rounded outwards to whole ms).
3. *Channel* (:mod:`clutchcall.traces.channel`): ``clean16``, ``noisy16`` (SNR 20/10/5 dB),
   ``pstn8`` (band-pass, 8 kHz, mu-law) or ``opus48`` (Opus round trip at 48 kHz). The
   channel of call ``i`` follows a fixed rotation so every channel is covered.

Holds (version 3, issue 16). A caller who pauses inside a turn and keeps the floor does not
sound like one who has finished. Gravano & Hirschberg (2011, "Turn-taking cues in
task-oriented dialogue", Computer Speech & Language 25(3)) measured it on the Columbia Games
Corpus: before a hold the speaker's inter-pausal unit ends with a plateau or continuation
contour (H-L%, ToBI), at a higher intensity and pitch level, more often with a filled pause
or a conjunction left open; before a turn end it ends with a final fall (L-L%) or a high rise
(H-H%, questions), lower intensity and pitch, and the IPU is longer. The cues combine; no
single one is reliable, and a fair share of holds carries none (Gravano & Hirschberg's
individual cues each appear before only part of the holds; Clark & Fox Tree 2002, "Using
uh and um in spontaneous speaking", Cognition 84, for filled pauses as signals of a coming
delay, which speakers place before *and* after the pause). Version 2 rendered every phrase of
a turn as a complete sentence (espeak-ng's full stop: a final fall), so a mid-turn pause
sounded exactly like a turn end. Version 3 renders the phrase before each mid-turn pause as
one of :data:`HOLD_CUES` (probabilities :data:`HOLD_CUE_P`): ``none`` -- as a turn end (the
holds real speech has with no cue, so no rule can be perfect); ``comma`` -- the phrase ends
with a comma, which espeak-ng speaks as a non-final clause; ``conjunction`` -- "..., and," /
"so," / "but," / "because,"; ``filled`` -- "..., um," / "uh,". Independently, the phrase after a
pause opens with a filled pause with probability :data:`FILLED_AFTER_P`. A turn's last phrase
ends with "?" if it is a yes/no question (espeak-ng: a final rise) and "." otherwise (a final
fall; wh-questions fall too), so a final rise is not a hold cue by itself. Measured on the
rendered clips (``engine/audio/features.py`` ``pitch_track``, 3 voices x 6 phrases, median
over clips, pitch slope over the last 300 ms ending at the last voiced frame / last 5 voiced
frames vs the clip's median pitch): "." -15.7 st/s / -3.5 st; "?" +10.1 st/s / 0.0 st; ","
+2.9 st/s / -0.7 st (a plateau); ", and," +3.4 / +0.1; ", so," +22 / -0.7; ", um," +21.7 /
-0.5 (``python notebooks/espeak_hold_probe.py``). An ARCTIC recording (a read sentence, final
fall; drawn as a turn's first phrase in version 2) is placed as the turn's *last* phrase when
the turn has several, so that every hold is an espeak-ng phrase with a drawn cue.
The hold cues are drawn from their own generator ``default_rng([seed, index, 16])``: the
main stream's draws are those of version 2 (the timeline still moves where a clip's length
changed). Each call's info lists its holds (``holds``, in the manifest).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clutchcall import __version__
from clutchcall.traces import speech as sp
from clutchcall.traces.channel import CHANNELS, apply_channel, check_available
from clutchcall.traces.drive import CHANNEL_CODEC, drive_call
from clutchcall.traces.labels import DEFAULT_EXPECT, LabelledCall, Labels, Segment, write_call
from clutchcall.traces.recorded import write_trace

MANIFEST = "MANIFEST.json"
GENERATOR_VERSION = 3
# v3 (issue 15 §4, and issue 16's hold cues: see the module docstring): an interruption usually opens the caller's turn -- the caller goes on
# talking after it ("no, wait -- I said Tuesday"); see plan_call's agent_turn. Its draws come
# from their own stream, default_rng([seed, index, 15]), so the main stream is unchanged.
# And "mhm" is hummed, not spelled out (BACKCHANNELS).
# Channel of call i: CHANNEL_ROTATION[i % 20]: 15 PSTN, 2 clean, 2 noisy, 1 Opus in 20.
# Narrow-band PSTN is the common case for phone agents and the smallest on disk; Opus at
# 48 kHz costs six times as many bytes per second, so it is the rarest.
CHANNEL_ROTATION = ("pstn8", "clean16", "pstn8", "noisy16", "pstn8", "opus48", "pstn8", "pstn8",
                    "pstn8", "pstn8", "pstn8", "clean16", "pstn8", "noisy16", "pstn8", "pstn8",
                    "pstn8", "pstn8", "pstn8", "pstn8")
SNRS_DB = (20.0, 10.0, 5.0)

VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us-nyc", "en-gb-x-gbclan")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4", "f5")

TURN_PHRASES = (
    "I'd like to check the status of my order",
    "my account number is four five six seven",
    "can you tell me when the store opens tomorrow",
    "I was charged twice for the same thing",
    "the package never arrived",
    "I need to change my delivery address",
    "could you send me a copy of the invoice",
    "I'm calling about the appointment on Friday",
    "my internet has been down since this morning",
    "is there any way to get a refund",
    "I'd like to book a table for four people",
    "what time does the last train leave",
    "my card was declined at the checkout",
    "I forgot my password and I can't log in",
    "can I move the meeting to next week",
    "the reference number is on the letter",
    "I think there's a mistake on my bill",
    "how much would it cost to upgrade",
    "I'm not sure which plan I'm on",
    "please cancel the subscription",
    "the last time I called nobody got back to me",
    "it's the blue one in the second picture",
    "we're moving house at the end of the month",
    "could you repeat the last part",
)
SHORT_ANSWERS = ("yes", "no", "sure", "yes please", "no thanks", "yep", "nope", "that's right")
BACKCHANNELS = ("[[m'hm]]", "ok", "yeah", "right", "uh-huh")
"""The backchannel tokens. "mhm" is given as espeak-ng phonemes (a hum, a breath, a hum):
as text espeak-ng spells it out, "em-aitch-em" (three syllables with an affricate), which
v1/v2 used -- one backchannel in five was no backchannel a caller would say (v3 fix)."""
INTERRUPTIONS = ("wait, stop", "no no, that's not what I meant", "hold on a second",
                 "sorry, stop, that's wrong", "no, wait")
CONTINUATIONS = ("I said Tuesday, not Thursday", "that's not my address", "I already paid that bill",
                 "I wanted the other one", "let me explain what happened", "that's the wrong account",
                 "I need to speak to someone else", "can you go back a step", "I asked about the refund",
                 "the order number is different")
"""What a caller says right after an interruption when it goes on talking (generator v3)."""
CONTINUE_P_LOUD = 0.7
"""Share of raised-voice interruptions the caller follows with more speech (v3)."""
CONTINUE_P_SOFT = 0.5
"""Share of soft interruptions followed by more speech (v3): the other half stay a lone soft
"no, wait", the hard case for a barge-in policy, so the task keeps it."""


def continuation_pause_ms(rng: np.random.Generator) -> int:
    """The pause between an interruption and the speech that follows it: lognormal, median
    200 ms, sigma 0.5, clipped to 60..600 ms (a within-turn pause after a short phrase: the
    caller has the floor and keeps it)."""
    return int(np.clip(rng.lognormal(np.log(200.0), 0.5), 60.0, 600.0))


@dataclass(frozen=True, slots=True, kw_only=True)
class Placed:
    """One caller clip (or noise burst) placed at ``start_ms`` on the call timeline."""

    start_ms: int
    clip: np.ndarray  # float32, 16 kHz
    level_db: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CallPlan:
    """A scripted call: clips placed on the timeline, its labels and its length."""

    placed: tuple[Placed, ...]
    labels: Labels
    duration_ms: int
    info: dict[str, Any]


def _ms(n_samples: int) -> int:
    return -(-n_samples * 1000 // sp.SPEECH_RATE)  # ceil


def response_gap_ms(rng: np.random.Generator) -> int:
    """A gap between turns: N(200, 180) ms clipped to 50..1200 (Stivers 2009; L&T 2015)."""
    return int(np.clip(rng.normal(200.0, 180.0), 50.0, 1200.0))


def mid_turn_pause_ms(rng: np.random.Generator) -> int:
    """A pause inside a turn: lognormal, median 500 ms, sigma 0.8 (p95 ~1.86 s), 150..3000."""
    return int(np.clip(rng.lognormal(np.log(500.0), 0.8), 150.0, 3000.0))


def noise_burst(rng: np.random.Generator) -> np.ndarray:
    """A non-speech burst at 16 kHz: a knock / door, a cough-like burst or a line-click train
    (80-400 ms), or keyboard typing (300-900 ms of key clicks 60-200 ms apart)."""
    kind = int(rng.integers(4))
    if kind == 3:  # keyboard: sharp clicks with a short resonance, at typing pace
        n = int(rng.integers(300, 900)) * sp.SPEECH_RATE // 1000
        y = np.zeros(n)
        at = 0
        while at < n - 200:
            m = min(160, n - at)
            y[at:at + m] += rng.standard_normal(m) * np.exp(-np.arange(m) / 25)
            at += int(rng.integers(60, 200)) * sp.SPEECH_RATE // 1000
        y = y / (np.max(np.abs(y)) + 1e-12)
        return y.astype(np.float32)
    n = int(rng.integers(80, 400)) * sp.SPEECH_RATE // 1000
    t = np.arange(n) / sp.SPEECH_RATE
    if kind == 0:  # knock: a few decaying low resonances
        y = np.zeros(n)
        for k in range(int(rng.integers(2, 4))):
            at = int(k * n / 3)
            tt = t[: n - at]
            y[at:] += np.sin(2 * np.pi * rng.uniform(120, 300) * tt) * np.exp(-tt * 40)
    elif kind == 1:  # cough-like: shaped broadband noise
        env = np.sin(np.pi * np.arange(n) / n) ** 2
        y = rng.standard_normal(n) * env
        y = np.convolve(y, np.ones(4) / 4, mode="same")
    else:  # clicks
        y = np.zeros(n)
        for at in rng.integers(0, max(1, n - 40), size=int(rng.integers(3, 8))):
            y[at:at + 40] += rng.standard_normal(40) * np.exp(-np.arange(40) / 6)
    y = y / (np.max(np.abs(y)) + 1e-12)
    return y.astype(np.float32)


class SpeechBank:
    """Speech clips for one build: espeak-ng per (text, voice, rate, pitch), and the ARCTIC
    utterances when ``human`` (fetched/cached on first use)."""

    def __init__(self, human: bool = True, cache_dir: Path | None = None) -> None:
        self.human = human
        self._arctic = sp.arctic_utterances(cache_dir) if human else []

    @property
    def arctic(self) -> list[tuple[str, np.ndarray]]:
        """The human utterances ``[(name, float32 16 kHz)]`` (empty when ``human`` is off)."""
        return self._arctic

    def say(self, text: str, voice: str, wpm: int, pitch: int) -> np.ndarray:
        """Return ``text`` spoken by espeak-ng (float32, 16 kHz, trimmed)."""
        return sp.espeak(text, voice, wpm, pitch)


def agent_reply_gap_ms(rng: np.random.Generator) -> int:
    """The gap before the agent's reply to a caller turn: a voice agent's pace, not a human's
    -- lognormal, median 1400 ms, sigma 0.15, clipped to 1100..2200 ms (end-of-turn silence
    + model time to first audio + network). Long enough that every sensible policy commits
    before the scripted reply starts, so the scripted agent scores policies, not the script."""
    return int(np.clip(rng.lognormal(np.log(1400.0), 0.15), 1100.0, 2200.0))


def backchannel_ms(rng: np.random.Generator) -> int:
    """A backchannel's length: lognormal, median 300 ms, sigma 0.5 (p95 ~680 ms), clipped to
    120..900 ms (docs/architecture.md §2: real backchannels last ~150-600 ms, median near 300 ms)."""
    return int(np.clip(rng.lognormal(np.log(300.0), 0.5), 120.0, 900.0))


HOLD_CUES = ("none", "comma", "conjunction", "filled")
HOLD_CUE_P = (0.25, 0.35, 0.20, 0.20)
"""How the phrase before a mid-turn pause is rendered (module docstring, "Holds"): no cue
(spoken like a turn end), continuation intonation (a comma), a trailing conjunction or a
trailing filled pause -- probabilities of each."""
CONJUNCTIONS = ("and", "so", "but", "because")
FILLED_PAUSES = ("um", "uh")
FILLED_AFTER_P = 0.15
"""Probability that the phrase after a mid-turn pause opens with a filled pause."""
YES_NO_OPENERS = ("can ", "could ", "is ", "are ", "do ", "does ", "would ", "will ")


def final_text(text: str) -> str:
    """``text`` as a finished sentence for espeak-ng: a yes/no question ends with "?" (a final
    rise), anything else with "." (a final fall; wh-questions fall too)."""
    return text + ("?" if text.startswith(YES_NO_OPENERS) else ".")


def hold_cue(rng: np.random.Generator) -> str:
    """Draw how a phrase before a mid-turn pause is rendered (:data:`HOLD_CUES`)."""
    return HOLD_CUES[int(np.searchsorted(np.cumsum(HOLD_CUE_P)[:-1], rng.random(), side="right"))]


def phrase_text(text: str, cue: str | None, rng: np.random.Generator, *, after_pause: bool) -> str:
    """The text espeak-ng speaks for one turn phrase: ``cue`` None for the turn's last phrase
    (:func:`final_text`), else the hold's rendering (:data:`HOLD_CUES`); a phrase after a
    pause may open with a filled pause (:data:`FILLED_AFTER_P`). Draws only from ``rng``."""
    if cue is None or cue == "none":
        out = final_text(text)
    elif cue == "comma":
        out = text + ","
    elif cue == "conjunction":
        out = f"{text}, {CONJUNCTIONS[int(rng.integers(len(CONJUNCTIONS)))]},"
    else:
        out = f"{text}, {FILLED_PAUSES[int(rng.integers(len(FILLED_PAUSES)))]},"
    if after_pause and rng.random() < FILLED_AFTER_P:
        out = f"{FILLED_PAUSES[int(rng.integers(len(FILLED_PAUSES)))]}, {out}"
    return out


def _free(segments: list[Segment], start: int, end: int, margin: int = 150) -> bool:
    return all(end + margin <= s.start_ms or s.end_ms + margin <= start for s in segments)


def plan_call(seed: int, index: int, bank: SpeechBank) -> CallPlan:
    """Script call ``index`` of ``seed`` (deterministic); return its :class:`CallPlan`."""
    rng = np.random.default_rng([seed, index])
    xrng = np.random.default_rng([seed, index, 15])  # v3 draws only (issue 15)
    voice = f"{VOICES[int(rng.integers(len(VOICES)))]}+{VARIANTS[int(rng.integers(len(VARIANTS)))]}"
    wpm = int(rng.integers(140, 191))
    pitch = int(rng.integers(30, 71))
    level = float(rng.uniform(-24.0, -18.0))  # the caller's speech level, dBFS RMS
    target_ms = int(rng.integers(4000, 7001))
    human = bank.human and rng.random() < 0.35

    placed: list[Placed] = []
    segments: list[Segment] = []
    agent: list[tuple[int, int]] = []
    pauses: list[tuple[int, int]] = []
    used_human: list[str] = []
    # the caller's holds (issue 16): how each phrase before a mid-turn pause is rendered,
    # drawn from a stream of their own so the main stream's draws stay those of version 2
    crng = np.random.default_rng([seed, index, 16])
    holds: list[str] = []

    def put(start: int, clip: np.ndarray, kind: str, level_db: float | None = None) -> int:
        lv = level + float(rng.uniform(-2.0, 2.0)) if level_db is None else level_db
        placed.append(Placed(start_ms=start, clip=clip, level_db=lv))
        end = start + _ms(len(clip))
        segments.append(Segment(start_ms=start, end_ms=end, kind=kind, expect=DEFAULT_EXPECT[kind]))
        return end

    def say(text: str, faster: int = 0) -> np.ndarray:
        return bank.say(text, voice, min(wpm + faster, 260), pitch)

    def fitted(text: str, target: int) -> np.ndarray:
        """``text`` spoken at the rate that makes it about ``target`` ms long."""
        clip = bank.say(text, voice, 175, pitch)
        rate = int(np.clip(round(175 * _ms(len(clip)) / max(target, 1)), 80, 450))
        return bank.say(text, voice, rate, pitch)

    def agent_turn(start: int) -> tuple[int, bool]:
        """Agent talks from ``start`` in 1-4 phrases with short pauses; the caller may
        backchannel (mostly at phrase boundaries), break in anywhere (some softly), or make a
        noise. Returns (when the caller may speak next, whether the turn ends with a
        question the caller answers)."""
        n = 1 + int(np.searchsorted([0.3, 0.65, 0.9], rng.random(), side="right"))
        t = start
        bounds: list[int] = []
        for k in range(n):
            if k:
                gap = int(rng.integers(150, 400))
                pauses.append((t, t + gap))
                bounds.append(t)
                t += gap
            t += int(rng.integers(600, 1600))
        end = t
        agent.append((start, end))
        next_free = end
        interrupted = False
        if rng.random() < 0.3:  # an interruption, anywhere in the turn: the agent must yield
            at = start + int(rng.integers(300, max(301, end - start - 400)))
            soft = rng.random() < 0.25  # a soft one: spoken at a backchannel's level
            lv = level + (-6.0 if soft else 2.0) + float(rng.uniform(-1.5, 1.5))
            clip = say(INTERRUPTIONS[int(rng.integers(len(INTERRUPTIONS)))], faster=-20 if soft else 0)
            stop = put(at, clip, "interruption", level_db=lv)
            # v3: the caller usually goes on talking -- it took the floor. The interruption's
            # segment then spans both (like a multi-phrase turn): the phrase, a short pause,
            # and the continuation at the caller's turn level.
            if xrng.random() < (CONTINUE_P_SOFT if soft else CONTINUE_P_LOUD):
                c_at = stop + continuation_pause_ms(xrng)
                c_clip = say(CONTINUATIONS[int(xrng.integers(len(CONTINUATIONS)))])
                placed.append(Placed(start_ms=c_at, clip=c_clip,
                                     level_db=level + float(xrng.uniform(-2.0, 2.0))))
                stop = c_at + _ms(len(c_clip))
                segments[-1] = Segment(start_ms=at, end_ms=stop, kind="interruption",
                                       expect=DEFAULT_EXPECT["interruption"])
            next_free = max(stop, end)
            interrupted = True
            end_bc = at - 200  # no backchannel after the caller broke in
        else:
            end_bc = end - 100
        for b in bounds:  # backchannels at phrase boundaries
            if rng.random() < 0.55:
                at = b + int(rng.integers(-150, 200))
                clip = fitted(BACKCHANNELS[int(rng.integers(len(BACKCHANNELS)))], backchannel_ms(rng))
                e = at + _ms(len(clip))
                if at >= start + 300 and e <= end_bc and _free(segments, at, e):
                    put(at, clip, "backchannel", level_db=level - 6.0 + float(rng.uniform(-2.0, 2.0)))
        if rng.random() < 0.2:  # a backchannel mid-phrase
            at = start + int(rng.integers(300, max(301, end - start - 300)))
            clip = fitted(BACKCHANNELS[int(rng.integers(len(BACKCHANNELS)))], backchannel_ms(rng))
            e = at + _ms(len(clip))
            if e <= end_bc and _free(segments, at, e):
                put(at, clip, "backchannel", level_db=level - 6.0 + float(rng.uniform(-2.0, 2.0)))
        if rng.random() < 0.25:  # a noise burst over the agent
            burst = noise_burst(rng)
            at = start + int(rng.integers(100, max(101, end - start - 500)))
            e = at + _ms(len(burst))
            if e <= end and _free(segments, at, e):
                put(at, burst, "noise", level_db=level + float(rng.uniform(-6.0, 3.0)))
        return next_free, (not interrupted) and rng.random() < 0.7

    t = int(rng.integers(300, 900))
    question = False
    if rng.random() < 0.6:  # the agent greets first (often with a question)
        t, question = agent_turn(t)
        t += response_gap_ms(rng)
    while True:
        if rng.random() < 0.2:  # a noise burst in the silence before the caller speaks
            burst = noise_burst(rng)
            end = put(t, burst, "noise", level_db=level + float(rng.uniform(-6.0, 3.0)))
            t = end + int(rng.integers(150, 500))
        if question and rng.random() < 0.7:  # a short answer to the agent's question
            t = put(t, say(SHORT_ANSWERS[int(rng.integers(len(SHORT_ANSWERS)))]), "short_answer")
        else:
            n_phrases = 1 + int(np.searchsorted([0.65, 0.95], rng.random(), side='right'))
            clips: list[np.ndarray] = []
            read: list[np.ndarray] = []  # an ARCTIC sentence: it ends the turn (see "Holds")
            for k in range(n_phrases):
                if human and k == 0 and bank.arctic:
                    name, clip = bank.arctic[int(rng.integers(len(bank.arctic)))]
                    used_human.append(name)
                    read.append(clip)
                else:
                    text = TURN_PHRASES[int(rng.integers(len(TURN_PHRASES)))]
                    last = k == n_phrases - 1 and not read
                    cue = None if last else hold_cue(crng)
                    if cue is not None:
                        holds.append(cue)
                    clips.append(say(phrase_text(text, cue, crng, after_pause=len(clips) > 0)))
            clips += read
            # one segment spans the whole turn, pauses included
            start = t
            lv = level + float(rng.uniform(-2.0, 2.0))
            for k, clip in enumerate(clips):
                if k:
                    t += mid_turn_pause_ms(rng)
                placed.append(Placed(start_ms=t, clip=clip, level_db=lv))
                t += _ms(len(clip))
            segments.append(Segment(start_ms=start, end_ms=t, kind="turn", expect="reply"))
        t, question = agent_turn(t + agent_reply_gap_ms(rng))
        if t >= target_ms - 1500:
            break
        t += response_gap_ms(rng)
    duration = t + int(rng.integers(300, 800))
    segments.sort(key=lambda s: s.start_ms)
    info = {"voice": voice, "wpm": wpm, "pitch": pitch, "level_dbfs": round(level, 2),
            "human_speech": sorted(set(used_human)), "holds": holds}
    labels = Labels(agent_speech=tuple(agent), segments=tuple(segments), agent_pauses=tuple(pauses))
    return CallPlan(placed=tuple(placed), labels=labels, duration_ms=duration, info=info)


def render(plan: CallPlan) -> tuple[np.ndarray, np.ndarray]:
    """Mix the plan's clips into a clean 16 kHz float64 signal; return ``(signal, speech
    mask)`` (the mask marks samples of speech clips, used to set noise SNR)."""
    n = plan.duration_ms * sp.SPEECH_RATE // 1000
    x = np.zeros(n, dtype=np.float64)
    mask = np.zeros(n, dtype=bool)
    noise_starts = {s.start_ms for s in plan.labels.segments if s.kind == "noise"}
    for p in plan.placed:
        clip = p.clip.astype(np.float64)
        rms = float(np.sqrt(np.mean(clip**2))) + 1e-12
        clip = clip * (10 ** (p.level_db / 20) / rms)
        peak = float(np.max(np.abs(clip)))
        if peak > 0.7:  # keep sparse bursts (clicks) and loud clips from clipping
            clip *= 0.7 / peak
        a = p.start_ms * sp.SPEECH_RATE // 1000
        x[a:a + len(clip)] += clip[: n - a]
        if p.start_ms not in noise_starts:
            mask[a:a + len(clip)] = True
    return x, mask


def split_of(seed: int, index: int) -> str:
    """Return the fixed split of call ``index`` of ``seed``: "test" for about half the calls
    (a hash of the pair, so every channel lands in both), else "train". Tune on train only."""
    return "test" if zlib.crc32(f"{seed}:{index}".encode()) % 2 else "train"


def build_call(seed: int, index: int, bank: SpeechBank) -> tuple[str, int, np.ndarray, Labels, dict[str, Any]]:
    """Build call ``index`` of ``seed``; return ``(name, rate, int16 pcm, labels, info)``."""
    channel = CHANNEL_ROTATION[index % len(CHANNEL_ROTATION)]
    plan = plan_call(seed, index, bank)
    x, mask = render(plan)
    info = dict(plan.info, channel=channel)
    rng = np.random.default_rng([seed, index, 1])
    snr = None
    if channel == "noisy16":
        snr = SNRS_DB[index % len(SNRS_DB)]
        info["snr_db"] = snr
    pink = (index // 10) % 2 == 0
    if channel == "noisy16":
        info["noise"] = "pink" if pink else "brown"
    rate, pcm = apply_channel(x, channel, active=mask, snr_db=snr, rng=rng,
                              noise_exponent=1.0 if pink else 2.0)
    name = f"call{index:04d}_{channel}"
    info["name"] = name
    info["split"] = split_of(seed, index)
    info["rate"] = rate
    return name, rate, pcm, plan.labels, info


def build_corpus(out_dir: str | Path, calls: int, seed: int, *, human: bool = True,
                 traces: int = 0, cache_dir: Path | None = None,
                 progress: Callable[[int], object] | None = None) -> dict[str, Any]:
    """Write ``calls`` labelled calls and ``MANIFEST.json`` into ``out_dir``; return the
    manifest. With ``traces`` > 0, also record the first ``traces`` calls driven through the
    turn engine with the default config (``NAME.parquet``, see
    :func:`clutchcall.traces.drive.drive_call`). ``progress`` is called with 1 after each
    call is written. Deterministic in ``(calls, seed, human, traces)``. Raises
    :class:`~clutchcall.traces.speech.SpeechSourceError` if espeak-ng or (with ``human``) the
    ARCTIC download is unavailable, and ``ChannelError`` if a codec is missing."""
    check_available({CHANNEL_ROTATION[i % len(CHANNEL_ROTATION)] for i in range(calls)})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bank = SpeechBank(human=human, cache_dir=cache_dir)
    entries = []
    for i in range(calls):
        name, rate, pcm, labels, info = build_call(seed, i, bank)
        write_call(out, name, rate, pcm, labels)
        if i < traces:
            trace = drive_call(LabelledCall(name=name, rate=rate, pcm=pcm, labels=labels),
                               codec=CHANNEL_CODEC[info["channel"]])
            write_trace(out / f"{name}.parquet", trace)
            info["trace"] = f"{name}.parquet"
        entries.append(info)
        if progress is not None:
            progress(1)
    manifest = {
        "generator": "clutchcall.traces.generator",
        "generator_version": GENERATOR_VERSION,
        "clutchcall_version": __version__,
        "espeak_ng": sp.espeak_version(),
        "seed": seed,
        "calls": calls,
        "human_speech": human,
        "command": f"clutchcall corpus build OUT_DIR --calls {calls} --seed {seed}"
                   + (f" --traces {traces}" if traces else "") + ("" if human else " --no-human"),
        "entries": entries,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


__all__ = ["CHANNELS", "CHANNEL_ROTATION", "SpeechBank", "build_call", "build_corpus", "plan_call", "render"]
