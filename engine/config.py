"""Turn engine configuration: one frozen dataclass, every knob documented and validated.

Theory of operation: :class:`TurnConfig` is built once per call, by the simulator and by the
production edge alike (from TOML, CLI flags or code), and is never mutated. Construction
validates every field and raises :class:`~clutchcall.engine.errors.ConfigError` naming the
field. Durations are integer milliseconds so that the engine's arithmetic on them is exact.

Defaults and why:

* ``response_min_speech_ms = 600`` -- the product's backchannel filter: a turn whose speech
  totals less than this never yields a final commit, so "mhm", "ok", "yeah" never wake the
  model.
* ``barge_confirm_ms = 300`` -- hold-and-confirm barge-in: speech over the agent must total
  this much before the agent is cancelled.
* ``end_of_turn_silence_ms = 500`` -- silence after the caller's last speech frame that ends
  the turn. The two published anchors agree on half a second: OpenAI's server VAD defaults to
  ``silence_duration_ms = 500`` and LiveKit's ``min_endpointing_delay`` is 0.5 s. Shorter
  cuts callers off mid-sentence (mid-turn pauses have a long tail, p95 well above 1 s);
  longer adds straight to turn latency, which is the number callers feel.
* ``prime_silence_ms = 200`` -- a pause this long inside a real turn (one already past the
  backchannel filter) sends a non-final commit, so the model has the turn so far in its
  context and the final commit costs it only the tail. 200 ms is about the modal gap between
  turns in conversation (Levinson & Torreira 2015), the earliest point a listener starts to
  plan a reply. 0 disables priming.
* ``burst_gap_ms = 100`` -- over the agent, a silence shorter than this does not end the
  caller's burst (webrtcvad flickers inside words); a silence this long ends it, and a pending
  barge-in that has not been confirmed is dismissed.
* ``frame_ms = 20`` -- the nominal caller frame length; webrtcvad accepts 10, 20 or 30.
  The engine accepts frames of any of these durations; this value is what shells frame to.
* ``vad_aggressiveness = 2`` -- webrtcvad's mode 0-3 (3 filters the most non-speech);
  used by the shells' VAD framing, kept here so a call has one config.
* ``policy = "threshold"`` -- which :mod:`~clutchcall.engine.policy` answers the engine's
  questions. ``"threshold"`` is the product's baseline (the two fixed thresholds above);
  ``"answer_aware"`` also lets a short turn that *answers* the agent (it starts within
  ``answer_window_ms`` of the agent's audio finishing on its own) through with
  ``answer_min_speech_ms`` of speech: "yes" / "no" after a question get a reply, while
  backchannels, which come during the agent's speech, are still filtered.
* ``barge_yield = "none"`` -- soft barge-in: what the agent does while a barge-in is
  pending. ``"none"`` keeps the seed's behaviour (the agent talks on until ``Cancel``);
  ``"duck"`` lowers its audio by ``duck_db`` (``Duck``, then ``Restore`` if dismissed);
  ``"pause"`` holds its playout (``Pause``, then ``Resume`` if dismissed: nothing is lost,
  the model never knows). Either way a confirmed barge-in still cancels, truncated at the
  audio the caller actually heard. Anchors: LiveKit pauses on overlapping speech and resumes
  on a false interruption; "duck, confirm, flush" designs duck on the first speech frames.
* ``barge_yield_ms = 100`` -- speech over the agent before it yields (0 = on the first
  speech frame). 100 ms is past most single-frame VAD blips and noise clicks while keeping
  the audible yield well under the ~350 ms a caller tolerates before repeating themselves.
* ``duck_db = 12`` / ``duck_ramp_ms = 20`` -- how far and how fast a duck lowers the agent
  (12 dB is clearly "the agent backs off" yet keeps it intelligible; a 20 ms ramp avoids a
  click).
* ``policy = "evidence"`` knobs: ``evidence_soft_db = 6``, ``evidence_edge_ms = 450``,
  ``evidence_edge_db = 6``, ``evidence_soft_confirm_ms = 1000``, ``evidence_min_snr_db = 6``
  -- see :class:`~clutchcall.engine.policy.EvidencePolicy`. Chosen on the corpus *train*
  split (sim/README.md): backchannels are spoken ~6 dB below the caller's turns and 87 % of
  them start within ~300 ms of an agent phrase end (interruptions: 36 %); a backchannel-like
  burst must last 1 s to cancel, past the longest backchannels (p95 ~700 ms plus VAD
  hangover); longer confirm times start to miss short soft interruptions.
* ``answer_min_speech_ms = 200`` / ``answer_window_ms = 1500`` -- the answer_aware policy's
  knobs (ignored by ``threshold``). 200 ms keeps a clipped "no"; 1.5 s covers the gap before
  answers (mean ~200 ms, long tail; Stivers et al. 2009).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from clutchcall.engine.errors import ConfigError

VAD_FRAME_MS = (10, 20, 30)
POLICY_NAMES = ("threshold", "answer_aware", "evidence")
BARGE_YIELDS = ("none", "duck", "pause")
_STR_FIELDS = ("policy", "barge_yield")


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnConfig:
    """The turn engine's knobs. All durations are integer milliseconds."""

    response_min_speech_ms: int = 600
    """A turn whose speech frames total less than this never yields ``Commit`` (it is a
    backchannel: ``BackchannelFiltered``). 0 turns the filter off."""

    barge_confirm_ms: int = 300
    """Speech over agent audio must total this long before ``Cancel``; shorter speech that
    ends first is dismissed and the agent keeps talking. 0 cancels on the first speech frame."""

    end_of_turn_silence_ms: int = 500
    """Silence after the last speech frame that ends the turn (``Commit`` or filtered)."""

    prime_silence_ms: int = 200
    """A pause this long in a turn past the backchannel filter emits ``Prime`` (non-final
    commit). Must be below ``end_of_turn_silence_ms``; 0 disables priming."""

    burst_gap_ms: int = 100
    """Over the agent, silence shorter than this does not end the caller's burst; a pending
    barge-in is dismissed once silence reaches it."""

    frame_ms: int = 20
    """Nominal caller frame duration (10, 20 or 30 ms, as webrtcvad accepts)."""

    vad_aggressiveness: int = 2
    """webrtcvad mode, 0 (least aggressive) to 3 (most)."""

    policy: str = "threshold"
    """Name of the turn policy: "threshold" (baseline) or "answer_aware"."""

    answer_min_speech_ms: int = 200
    """answer_aware only: speech a turn that answers the agent needs for ``Commit``."""

    answer_window_ms: int = 1500
    """answer_aware only: a turn starting within this long after the agent's audio finished on
    its own (not cancelled) is an answer."""

    # ------------------------------------------------------------ soft barge-in (issue 15)
    barge_yield: str = "none"
    """While a barge-in is pending: "none" (talk on), "duck" or "pause" the agent."""

    barge_yield_ms: int = 100
    """Speech over the agent before it yields (duck / pause); 0 = on the first speech frame."""

    duck_db: int = 12
    """How many dB a duck lowers the agent's audio (1..60)."""

    duck_ramp_ms: int = 20
    """How long the duck's (and the restore's) gain ramp lasts."""

    # ------------------------------------------------------------ evidence policy (issue 15)
    evidence_soft_db: int = 6
    """evidence only: a burst whose mean level is more than this many dB *below* the
    caller's running speech level is soft (how backchannels are spoken)."""

    evidence_edge_ms: int = 450
    """evidence only: a burst starting within this long of the agent's phrase end is
    backchannel-like unless raised (0 disables the cue)."""

    evidence_edge_db: int = 6
    """evidence only: ...raised = its mean level at least this many dB above the caller's
    running speech level."""

    evidence_soft_confirm_ms: int = 1000
    """evidence only: speech a soft burst over the agent needs to confirm a barge-in."""

    evidence_min_snr_db: int = 6
    """evidence only: a frame less than this many dB above the running noise floor is
    silence whatever the VAD says."""

    def __post_init__(self) -> None:
        if self.policy not in POLICY_NAMES:
            raise ConfigError(f"TurnConfig.policy: must be one of {POLICY_NAMES}, got {self.policy!r}")
        if self.barge_yield not in BARGE_YIELDS:
            raise ConfigError(
                f"TurnConfig.barge_yield: must be one of {BARGE_YIELDS}, got {self.barge_yield!r}")
        if isinstance(self.duck_db, int) and not 1 <= self.duck_db <= 60:
            raise ConfigError(f"TurnConfig.duck_db: must be 1..60, got {self.duck_db}")
        for f in dataclasses.fields(self):
            if f.name in _STR_FIELDS:
                continue
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"TurnConfig.{f.name}: expected an integer, got {value!r}")
            if value < 0:
                raise ConfigError(f"TurnConfig.{f.name}: must be >= 0, got {value}")
        if self.end_of_turn_silence_ms < 1:
            raise ConfigError("TurnConfig.end_of_turn_silence_ms: must be >= 1 ms")
        if self.prime_silence_ms and self.prime_silence_ms >= self.end_of_turn_silence_ms:
            raise ConfigError(
                "TurnConfig.prime_silence_ms: must be below end_of_turn_silence_ms "
                f"({self.prime_silence_ms} >= {self.end_of_turn_silence_ms}); 0 disables priming"
            )
        if self.frame_ms not in VAD_FRAME_MS:
            raise ConfigError(f"TurnConfig.frame_ms: must be one of {VAD_FRAME_MS}, got {self.frame_ms}")
        if self.vad_aggressiveness > 3:
            raise ConfigError(
                f"TurnConfig.vad_aggressiveness: must be 0..3, got {self.vad_aggressiveness}"
            )
        for name in ("response_min_speech_ms", "barge_confirm_ms", "end_of_turn_silence_ms",
                     "burst_gap_ms", "answer_min_speech_ms", "answer_window_ms",
                     "barge_yield_ms", "duck_ramp_ms"):
            if getattr(self, name) > 60_000:
                raise ConfigError(f"TurnConfig.{name}: must be <= 60000 ms, got {getattr(self, name)}")

    def replace(self, **changes: Any) -> TurnConfig:
        """Return a copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, int | str]:
        """Return the config as a plain dict (for traces and JSON output)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TurnConfig:
        """Build from a dict (TOML table, JSON); unknown keys raise ``ConfigError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"TurnConfig: unknown field(s) {', '.join(unknown)}")
        return cls(**data)
