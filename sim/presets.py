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
``livekit`` -- LiveKit Agents defaults (TurnHandlingOptions: ``interruption.min_duration =
    0.5 s``, ``endpointing.min_delay = 0.5 s``; docs.livekit.io/reference/agents/
    turn-handling-options): ``barge_confirm_ms = 500``, ``end_of_turn_silence_ms = 500``;
    LiveKit replies to any VAD-detected speech, and its Silero VAD needs 50 ms of speech
    (``min_speech_duration = 0.05``), so ``response_min_speech_ms = 60`` (three 20 ms frames);
    no prime.
``pipecat`` -- Pipecat with Silero ``VADParams(start_secs=0.2, stop_secs=0.2)`` (the stop time
    Pipecat recommends with its turn model; docs.pipecat.ai speech-input): a burst counts as
    speech, for a turn and for an interruption alike, after 0.2 s, and 0.2 s of silence ends
    it: ``response_min_speech_ms = 200``, ``barge_confirm_ms = 200``,
    ``end_of_turn_silence_ms = 200``, no prime (it must stay below the end-of-turn silence).
``clutchcall`` -- the product default (issue 15): the ``evidence`` policy (answer-aware
    turns, barge-ins judged on the burst's level relative to the caller's own speech level,
    a noise-floor gate) with soft barge-in ``barge_yield = "pause"``.
``threshold`` -- :class:`~clutchcall.engine.TurnConfig` defaults, the seed's configuration
    (600 ms backchannel filter, 300 ms hold-and-confirm, 500 ms end of turn, prime at 200 ms,
    no soft barge-in).
``clutchcall-answer`` -- the defaults with the opt-in ``answer_aware`` policy: a turn that starts
    within 1.5 s after the agent's audio finished on its own needs only 200 ms of speech, so
    short answers to the agent's questions get a reply (engine/policy.py).
"""

from __future__ import annotations

from clutchcall.engine import TurnConfig
from clutchcall.engine.errors import ConfigError

PRESETS: dict[str, TurnConfig] = {
    "naive": TurnConfig(response_min_speech_ms=0, barge_confirm_ms=0,
                        end_of_turn_silence_ms=500, prime_silence_ms=0),
    "livekit": TurnConfig(response_min_speech_ms=60, barge_confirm_ms=500,
                          end_of_turn_silence_ms=500, prime_silence_ms=0),
    "pipecat": TurnConfig(response_min_speech_ms=200, barge_confirm_ms=200,
                          end_of_turn_silence_ms=200, prime_silence_ms=0),
    "clutchcall": TurnConfig(policy="evidence", barge_yield="pause", barge_yield_ms=200),
    "threshold": TurnConfig(),
    "clutchcall-answer": TurnConfig(policy="answer_aware"),
}


def preset(name: str) -> TurnConfig:
    """Return the TurnConfig of preset ``name``; raise ConfigError for an unknown name."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r} (one of {', '.join(PRESETS)})") from None
