"""Peer turn-taking policies as named presets, expressed as TurnConfig values.

Theory of operation: each preset is what another stack's *default* behaviour amounts to once
it is written in the engine's own terms, so ``clutchcall sim compare`` replays the same calls
through the same engine and only the policy differs. No sim-side VAD smoothing is added: every
preset sees the same per-frame VAD decisions, and a peer's VAD start/stop times map onto the
engine's knobs as below. The mapping, with its sources:

``naive`` -- a plain server VAD with interrupt-on-speech (the OpenAI Realtime API's
    ``server_vad`` used as is: ``silence_duration_ms = 500``, and clients that cancel the
    response on ``input_audio_buffer.speech_started``): ``barge_confirm_ms = 0`` (cancel on the
    first speech frame over the agent), ``response_min_speech_ms = 0`` (any burst is a turn),
    ``end_of_turn_silence_ms = 500``, no prime.
``livekit`` -- LiveKit Agents 1.8.9 defaults with VAD turn handling, *validated against the
    real library* (``clutchcall eval --peer livekit``, :mod:`clutchcall.sim.peers`; table in
    sim/README.md) and re-mapped on the corpus train split (issue 15): LiveKit counts a
    barge-in's ``speech_duration`` from the Silero segment's start *including* its 0.55 s
    silence hangover, so any burst Silero detects (>= 50 ms) reaches ``interruption.min_duration
    = 0.5 s`` and interrupts; the turn ends ``endpointing.min_delay = 0.5 s`` after the
    segment ends (0.55 s of silence): ``response_min_speech_ms = 60``, ``barge_confirm_ms =
    200`` (matches the real false barge-in rate; the engine cannot express "0.5 s after the
    onset whatever the burst's length", so the preset yields ~300 ms sooner than the real
    LiveKit), ``end_of_turn_silence_ms = 1050``; no prime. (The seed's 500 / 500 mapping
    understated LiveKit's false barge-ins about 3x.)
``pipecat`` -- Pipecat 1.14 VAD-only with a speech-to-speech service, *validated against the
    real library* (``clutchcall eval --peer pipecat``) and re-mapped on the train split:
    Silero ``VADParams`` defaults (start 0.2 s, stop 0.2 s, confidence 0.7, min volume 0.6),
    the turn starts (and interrupts) at VAD start, and ends ``user_speech_timeout = 0.6 s``
    after VAD stop: ``response_min_speech_ms = 0`` (no minimum), ``barge_confirm_ms = 350``
    (Silero's start debouncing plus its confidence / volume gates, fitted to the real false
    barge-in rate and yield latency), ``end_of_turn_silence_ms = 750`` (0.2 s + 0.6 s, less
    webrtcvad's own hangover); no prime. (The seed's 200 / 200 / 200 mapping committed ~500 ms
    earlier than Pipecat.)
``clutchcall`` -- the product's config, ``PRODUCT_TURN``: the ``evidence`` policy
    (answer-aware turns, barge-ins judged on the burst's level relative to the caller's own
    speech level and its onset against the agent's phrase ends, a noise-floor gate) with soft
    barge-in ``barge_yield = "pause"`` (issue 15), speculative commit and the adaptive end of
    turn (issue 16; ``--no-speculate`` is the product without speculation).
``threshold`` -- :class:`~clutchcall.engine.TurnConfig` defaults, the seed's configuration
    (600 ms backchannel filter, 300 ms hold-and-confirm, 500 ms end of turn, prime at 200 ms,
    no soft barge-in).
``clutchcall-answer`` -- the defaults with the opt-in ``answer_aware`` policy: a turn that starts
    within 1.5 s after the agent's audio finished on its own needs only 200 ms of speech, so
    short answers to the agent's questions get a reply (engine/policy.py).
"""

from __future__ import annotations

from clutchcall.engine import TurnConfig
from clutchcall.engine.config import PRODUCT_TURN
from clutchcall.engine.errors import ConfigError

PRESETS: dict[str, TurnConfig] = {
    "naive": TurnConfig(response_min_speech_ms=0, barge_confirm_ms=0,
                        end_of_turn_silence_ms=500, prime_silence_ms=0),
    "livekit": TurnConfig(response_min_speech_ms=60, barge_confirm_ms=200,
                          end_of_turn_silence_ms=1050, prime_silence_ms=0),
    "pipecat": TurnConfig(response_min_speech_ms=0, barge_confirm_ms=350,
                          end_of_turn_silence_ms=750, prime_silence_ms=0),
    "clutchcall": PRODUCT_TURN,
    "threshold": TurnConfig(),
    "clutchcall-answer": TurnConfig(policy="answer_aware"),
}


def preset(name: str) -> TurnConfig:
    """Return the TurnConfig of preset ``name``; raise ConfigError for an unknown name."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r} (one of {', '.join(PRESETS)})") from None
