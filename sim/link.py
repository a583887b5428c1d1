"""One direction of a network path: delay, jitter, loss and a bottleneck queue.

Theory of operation: a :class:`Link` turns "a packet of ``nbytes`` handed to the network at
time ``t``" into either an arrival time at the far end or a loss, in closed form, with no
simulation events of its own. The model, in the order a packet meets it:

1. **Loss** -- Bernoulli with probability ``loss``, or, when ``ge_p > 0``, a two-state
   Gilbert-Elliott chain stepped once per packet (good -> bad with ``ge_p``, bad -> good with
   ``ge_r``; a packet is lost with ``ge_loss_bad`` in the bad state and ``loss`` in the good
   state). The mean burst length is ``1 / ge_r`` packets (Gilbert 1960, Elliott 1963; the
   same parameterisation as Linux netem's ``loss gemodel p r 1-h 1-k``).
2. **Bottleneck** -- a FIFO drained at ``rate_kbps`` (0 = no bottleneck): a packet departs at
   ``max(t, busy_until) + 8 * nbytes / rate``; if the bytes already queued plus this packet
   exceed ``queue_bytes`` it is tail-dropped.
3. **Propagation** -- ``rtt_ms / 2`` one way, plus a per-packet jitter drawn from an
   exponential distribution with mean ``jitter_ms`` (non-negative, with a tail; packets may
   be reordered by it, as on real paths).

All randomness comes from one ``numpy.random.Generator`` per link (per direction), seeded by
the caller, drawn in fixed-size blocks so the per-packet path is a few float operations while
the sequence of draws -- and so every result -- depends only on the seed and the order of
packets.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from clutchcall.engine.errors import ConfigError

_BLOCK = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkConfig:
    """Parameters of one direction of a path (the reverse direction is a second LinkConfig)."""

    rtt_ms: float = 50.0
    """Round-trip propagation delay; each direction adds half of it."""
    jitter_ms: float = 0.0
    """Mean of the exponential per-packet extra delay (0 = none)."""
    loss: float = 0.0
    """Bernoulli loss probability (the good-state loss when Gilbert-Elliott is on)."""
    ge_p: float = 0.0
    """Gilbert-Elliott P(good -> bad) per packet; 0 disables the burst model."""
    ge_r: float = 0.5
    """Gilbert-Elliott P(bad -> good) per packet (mean burst = 1/ge_r packets)."""
    ge_loss_bad: float = 1.0
    """Loss probability in the bad state."""
    rate_kbps: float = 0.0
    """Bottleneck rate in kbit/s; 0 = unlimited (no serialisation delay)."""
    queue_bytes: int = 64_000
    """Bottleneck buffer; a packet that would overflow it is dropped."""

    def __post_init__(self) -> None:
        for name in ("rtt_ms", "jitter_ms", "rate_kbps"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise ConfigError(f"LinkConfig.{name}: must be a finite number >= 0, got {v!r}")
        for name in ("loss", "ge_p", "ge_r", "ge_loss_bad"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"LinkConfig.{name}: must be a probability in [0, 1], got {v!r}")
        if self.ge_p > 0 and self.ge_r <= 0:
            raise ConfigError("LinkConfig.ge_r: must be > 0 when ge_p > 0 (bursts must end)")
        if self.queue_bytes < 1:
            raise ConfigError(f"LinkConfig.queue_bytes: must be >= 1, got {self.queue_bytes}")

    @property
    def one_way_s(self) -> float:
        """Base one-way delay in seconds (RTT/2)."""
        return self.rtt_ms / 2000.0

    def to_dict(self) -> dict[str, float]:
        """Return the parameters as a plain dict (for result metadata)."""
        return asdict(self)


class Link:
    """One direction of a path; see the module docstring for the model."""

    __slots__ = (
        "_bad",
        "_bps",
        "_busy_until",
        "_e",
        "_ei",
        "_ge",
        "_jit",
        "_owd",
        "_rng",
        "_u",
        "_ui",
        "cfg",
        "lost",
        "sent",
    )

    def __init__(self, cfg: LinkConfig, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self._rng = rng
        self._u: list[float] = []
        self._e: list[float] = []
        self._ui = 0
        self._ei = 0
        self._bad = False
        self._busy_until = 0.0
        self._owd = cfg.one_way_s
        self._jit = cfg.jitter_ms / 1000.0
        self._bps = cfg.rate_kbps * 1000.0
        self._ge = cfg.ge_p > 0
        self.sent = 0
        self.lost = 0

    def _uniform(self) -> float:
        if self._ui >= len(self._u):
            self._u = self._rng.random(_BLOCK).tolist()
            self._ui = 0
        v = self._u[self._ui]
        self._ui += 1
        return v

    def _exp(self) -> float:
        if self._ei >= len(self._e):
            self._e = self._rng.standard_exponential(_BLOCK).tolist()
            self._ei = 0
        v = self._e[self._ei]
        self._ei += 1
        return v

    def transmit(self, t: float, nbytes: int) -> float | None:
        """Send ``nbytes`` at time ``t`` (s). Return the arrival time (s), or None if lost."""
        self.sent += 1
        cfg = self.cfg
        if self._ge:
            if self._bad:
                if self._uniform() < cfg.ge_r:
                    self._bad = False
            elif self._uniform() < cfg.ge_p:
                self._bad = True
            p = cfg.ge_loss_bad if self._bad else cfg.loss
            if p > 0.0 and self._uniform() < p:
                self.lost += 1
                return None
        elif cfg.loss > 0.0 and self._uniform() < cfg.loss:
            self.lost += 1
            return None
        depart = t
        if self._bps > 0.0:
            start = max(t, self._busy_until)
            backlog = (start - t) * self._bps / 8.0
            if backlog + nbytes > cfg.queue_bytes:
                self.lost += 1
                return None
            depart = start + nbytes * 8.0 / self._bps
            self._busy_until = depart
        arrival = depart + self._owd
        if self._jit > 0.0:
            arrival += self._jit * self._exp()
        return arrival


def direction_rngs(seed: int) -> dict[str, np.random.Generator]:
    """Return the run's independent generators, all derived from ``seed``.

    Keys: ``uplink`` / ``downlink`` (data packets of each direction), ``uplink_ack`` /
    ``downlink_ack`` (the acknowledgements flowing back for that direction's data, drawn with
    the reverse link's parameters), ``model`` (the modelled speech-to-speech model).
    """
    ss = np.random.SeedSequence(int(seed))
    up, down, model = ss.spawn(3)
    up_data, up_ack = up.spawn(2)
    down_data, down_ack = down.spawn(2)
    return {
        "uplink": np.random.Generator(np.random.PCG64(up_data)),
        "uplink_ack": np.random.Generator(np.random.PCG64(up_ack)),
        "downlink": np.random.Generator(np.random.PCG64(down_data)),
        "downlink_ack": np.random.Generator(np.random.PCG64(down_ack)),
        "model": np.random.Generator(np.random.PCG64(model)),
    }
