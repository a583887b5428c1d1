"""Peers run for real: a peer library's own VAD and turn logic driven offline on a call's audio.

Theory of operation
-------------------
The ``livekit`` / ``pipecat`` presets of :mod:`clutchcall.sim.presets` are *mappings* of a
peer's knobs onto this engine, fed by webrtcvad. To check them, this module runs the peer's
real code (optional dependencies, the ``[peers]`` extra) on the same calls and turns what it
decides into a stream the engine can replay exactly:

1. The peer's VAD state machine is driven frame by frame on the call's audio, as its
   transport would feed it (20 ms chunks at 1x, in order; offline, no clock). The result is,
   per 20 ms caller frame, whether the peer considers the user *speaking* -- the state
   between its "user started speaking" and "user stopped speaking" events, which already
   include the peer's own start / stop debouncing.
2. The peer's turn logic on those events is expressed as an engine :class:`TurnConfig`
   acting at once on that stream (see each peer), so the simulator (network, model, scripted
   agent, scoring) is unchanged and the comparison is like for like.

Peers:

* ``pipecat`` -- Pipecat 1.14 with a speech-to-speech (realtime) service, VAD only:
  ``SileroVADAnalyzer`` with default ``VADParams`` (confidence 0.7, start 0.2 s, stop 0.2 s,
  min volume 0.6) over the audio (8 kHz as is, else resampled to 16 kHz); the user turn starts
  (and interrupts the bot) at ``VADUserStartedSpeaking`` (``VADUserTurnStartStrategy``: no
  minimum) and stops ``user_speech_timeout`` = 0.6 s after ``VADUserStoppedSpeaking``
  (``SpeechTimeoutUserTurnStopStrategy`` with ``wait_for_transcript`` off, as
  ``realtime_service_mode`` sets it). Engine terms: speech = the speaking state, a reply for
  any turn, a cancel on the first speaking frame over the agent, end of turn after 600 ms.
  The analyzer's ``_run_analyzer`` is called directly: it is the synchronous body that
  ``analyze_audio`` runs in an executor.
* ``livekit`` -- LiveKit Agents 1.8.9, VAD turn handling (``turn_detection="vad"``,
  interruption mode ``vad``): the Silero plugin's own ``VADStream``
  (``silero.VAD.load()`` defaults: activation 0.5, min speech 0.05 s, min silence 0.55 s,
  prefix padding 0.5 s) over the audio (8 kHz as is, else 16 kHz), its START_OF_SPEECH /
  END_OF_SPEECH events giving the speaking state (which holds through the 0.55 s hangover);
  ``AgentActivity.on_vad_inference_done`` interrupts once the segment's ``speech_duration``
  (counted from the speech threshold, hangover included) reaches ``min_duration`` 0.5 s, and
  the turn ends ``min_delay`` 0.5 s (fixed endpointing) after END_OF_SPEECH. Engine terms:
  speech = the speaking state, a reply for any turn, a cancel after 440 ms of speaking state
  over the agent (0.5 s less the ~60 ms the segment had counted at START_OF_SPEECH), end of
  turn after 500 ms. Not modelled: ``resume_false_interruption`` (LiveKit pauses and resumes
  when no transcript follows within 2 s; a speech-to-speech model transcribes a "mhm", so
  the pause ends as an interruption, counted here as the cancel) and the adaptive
  (model-based) interruption mode, which needs LiveKit's inference service.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from clutchcall.engine import TurnConfig
from clutchcall.engine.errors import ConfigError
from clutchcall.sim.calls import Call

PEER_NAMES = ("pipecat", "livekit")

PEER_HANGOVER_MS = {"pipecat": 200, "livekit": 560}
"""How long each peer's speaking state outlasts speech (its VAD stop debouncing: Pipecat's
``stop_secs`` 0.2 s; LiveKit's ``min_silence_duration`` 0.55 s, in 32 ms windows): taken off
a turn's last speech frame for scoring only (``Call.speech_hangover_frames``)."""

PEER_TURN: dict[str, TurnConfig] = {
    # the speaking state already holds Pipecat's 0.2 s start / stop debouncing
    "pipecat": TurnConfig(response_min_speech_ms=0, barge_confirm_ms=0,
                          end_of_turn_silence_ms=600, prime_silence_ms=200),
    "livekit": TurnConfig(response_min_speech_ms=0, barge_confirm_ms=440,
                          end_of_turn_silence_ms=500, prime_silence_ms=200),
}
"""Each peer's turn logic in engine terms, acting on the peer's speaking stream."""


def pipecat_speaking(pcm: np.ndarray, rate: int, frame_ms: int = 20) -> list[bool]:
    """Return, per ``frame_ms`` frame of int16 ``pcm`` at ``rate``, whether Pipecat's real
    ``SileroVADAnalyzer`` (default ``VADParams``) says the user is speaking after that frame
    (state SPEAKING or STOPPING). Raises ConfigError if pipecat-ai is not installed."""
    try:
        from pipecat.audio.vad.silero import SileroVADAnalyzer
        from pipecat.audio.vad.vad_analyzer import VADParams, VADState
    except ImportError as exc:  # the optional [peers] extra
        raise ConfigError(f"peer pipecat needs pipecat-ai (pip install 'clutchcall[peers]'): "
                          f"{exc}") from exc
    x = np.asarray(pcm, dtype=np.int16)
    vad_rate = rate if rate in (8000, 16000) else 16000
    if vad_rate != rate:
        import soxr

        x = np.asarray(soxr.resample(x, rate, vad_rate, quality="HQ"), dtype=np.int16)
    from loguru import logger  # pipecat's logger (a dependency of pipecat-ai)

    logger.disable("pipecat")
    an = SileroVADAnalyzer(sample_rate=vad_rate, params=VADParams())
    an.set_sample_rate(vad_rate)  # what the transport does at start: sizes the VAD frames
    step = vad_rate * frame_ms // 1000
    n = len(x) // step
    speaking = (VADState.SPEAKING, VADState.STOPPING)
    out = []
    for k in range(n):
        state = an._run_analyzer(x[k * step:(k + 1) * step].tobytes())
        out.append(state in speaking)
    return out


def _to_vad_rate(pcm: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    x = np.asarray(pcm, dtype=np.int16)
    if rate in (8000, 16000):
        return x, rate
    import soxr

    return np.asarray(soxr.resample(x, rate, 16000, quality="HQ"), dtype=np.int16), 16000


_LK_VADS: dict[int, Any] = {}


def livekit_speaking(pcm: np.ndarray, rate: int, frame_ms: int = 20) -> list[bool]:
    """Return, per ``frame_ms`` frame of int16 ``pcm`` at ``rate``, whether LiveKit's real
    Silero ``VADStream`` (plugin defaults) is in a speech segment at that frame's end
    (between its START_OF_SPEECH and END_OF_SPEECH events). Raises ConfigError if
    livekit-agents / livekit-plugins-silero are not installed."""
    try:
        from livekit import rtc
        from livekit.agents.vad import VADEventType
        from livekit.plugins import silero
    except ImportError as exc:  # the optional [peers] extra
        raise ConfigError("peer livekit needs livekit-agents and livekit-plugins-silero "
                          f"(pip install 'clutchcall[peers]'): {exc}") from exc
    import asyncio
    import logging

    logging.getLogger("livekit").setLevel(logging.ERROR)
    logging.getLogger("livekit.agents").setLevel(logging.ERROR)
    x, vr = _to_vad_rate(pcm, rate)
    step = vr * frame_ms // 1000
    n = len(x) // step

    async def run() -> list[tuple[float, bool]]:
        vad = _LK_VADS.get(vr)
        if vad is None:  # the model loads once per rate (a stream is per call)
            vad = _LK_VADS[vr] = silero.VAD.load(sample_rate=8000 if vr == 8000 else 16000,
                                                 force_cpu=True)
        st = vad.stream()
        for k in range(n):
            st.push_frame(rtc.AudioFrame(data=x[k * step:(k + 1) * step].tobytes(),
                                         sample_rate=vr, num_channels=1,
                                         samples_per_channel=step))
        st.end_input()
        marks = []
        async for ev in st:
            if ev.type == VADEventType.START_OF_SPEECH:
                marks.append((ev.samples_index / vr, True))
            elif ev.type == VADEventType.END_OF_SPEECH:
                marks.append((ev.samples_index / vr, False))
        await st.aclose()
        return marks

    marks = asyncio.run(run())
    out, j, speaking = [], 0, False
    fs = frame_ms / 1000.0
    for k in range(n):
        end = (k + 1) * fs
        while j < len(marks) and marks[j][0] <= end + 1e-9:
            speaking = marks[j][1]
            j += 1
        out.append(speaking)
    return out


def peer_call(call: Call, path: str | Path, peer: str) -> Call:
    """Return ``call`` with its caller speech replaced by ``peer``'s speaking stream computed
    on the call's audio at ``path`` (its features dropped: peers have none). Raises
    ConfigError for an unknown peer or a missing peer library."""
    if peer not in PEER_NAMES:
        raise ConfigError(f"unknown peer {peer!r} (one of {', '.join(PEER_NAMES)})")
    from clutchcall.traces.labels import read_call

    p = Path(path)
    lc = read_call(p.with_suffix("") if p.suffix in (".json", ".wav") else p)
    speaking = pipecat_speaking if peer == "pipecat" else livekit_speaking
    stream = speaking(np.asarray(lc.pcm, dtype=np.int16), lc.rate, call.frame_ms)
    n = len(call.speech)
    stream = (stream + [False] * n)[:n]
    return dataclasses.replace(call, speech=tuple(stream), features=None,
                               speech_hangover_frames=PEER_HANGOVER_MS[peer] // call.frame_ms)


def load_peer_calls(paths: list[str], peer: str, *, split: str = "all",
                    frame_ms: int = 20) -> list[Call]:
    """Load labelled calls like :func:`clutchcall.sim.runner.load_calls` (the checked-in
    corpus if ``paths`` is empty; ``split`` of its MANIFEST), each with ``peer``'s speaking
    stream (:func:`peer_call`). Raises CallFormatError / ConfigError."""
    from clutchcall.sim.calls import find_calls, load_call
    from clutchcall.sim.runner import default_corpus, split_names

    paths = list(paths) or [str(default_corpus())]
    keep = split_names(paths, split)
    return [peer_call(load_call(p, frame_ms=frame_ms), p, peer) for p in find_calls(paths)
            if p.suffix != ".parquet" and (keep is None or p.name in keep)]
