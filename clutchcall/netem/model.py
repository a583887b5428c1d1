"""The packet impairment model of one direction of the emulated WAN link (pure, no I/O).

Theory of operation: every IP packet that enters a direction of the link is handed to
:meth:`PathModel.admit` with the time it arrived and its size. The model answers with the
time the packet leaves the far end of the link, or ``None`` if the link loses it. The answer
is computed entirely at arrival, in three stages applied in this order:

1. **Random loss** (at ingress, so a lost packet uses no bottleneck capacity): Bernoulli with
   probability ``loss``, or a Gilbert-Elliott two-state Markov chain (netem's ``gemodel``
   parameters ``p`` = P(good -> bad), ``r`` = P(bad -> good), ``loss_bad`` = 1-h = loss
   probability in the bad state, ``loss_good`` = 1-k = loss probability in the good state).
   For each packet the loss is drawn with the current state's probability, then the state
   makes its transition. With the defaults (``loss_bad=1``, ``loss_good=0``, the "simple
   Gilbert" model) a loss burst is geometric with mean length ``1/r`` packets and the
   long-run loss rate is ``p / (p + r)``.
2. **Bottleneck** (optional): a FIFO token bucket of ``rate_kbps`` kilobits/s with a depth of
   ``burst_bytes`` (at least one packet). Because the queue is FIFO its departure times can be
   computed when a packet arrives. A packet that finds ``queue_packets`` packets still waiting
   is tail-dropped.
3. **Propagation**: the one-way ``delay_ms`` plus a jitter drawn uniformly from
   ``[-jitter_ms, +jitter_ms]`` (clipped so the delay is never negative). Unless ``reorder`` is
   set, a packet never leaves before the packet admitted just before it (release time is
   ``max(sample, previous release)``), as on a real path without reordering.

Randomness comes from two ``random.Random`` streams seeded from ``(seed, name)``: one for loss,
one for jitter. Loss decisions therefore depend only on the packet's ordinal in its direction
(not on timing), and the same seed and packet sequence give the same decisions, byte for byte.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field, replace

from clutchcall.engine.errors import ConfigError, LocalProtocolError

__all__ = ["GilbertElliott", "PathConfig", "PathModel", "PathStats", "WanLinkConfig", "parse_ge"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GilbertElliott:
    """Gilbert-Elliott loss parameters, per packet (netem ``gemodel p r 1-h 1-k``).

    p: probability of moving from the good to the bad state (default none: required).
    r: probability of moving from the bad to the good state; mean burst length is ``1/r``.
    loss_bad: loss probability while in the bad state (1-h; default 1.0).
    loss_good: loss probability while in the good state (1-k; default 0.0).
    """

    p: float
    r: float
    loss_bad: float = 1.0
    loss_good: float = 0.0

    def __post_init__(self) -> None:
        for name in ("p", "r", "loss_bad", "loss_good"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
                raise ConfigError(f"ge.{name} must be a probability in [0, 1], got {v!r}")
        if self.r == 0.0 and self.p > 0.0:
            raise ConfigError("ge.r must be > 0 when ge.p > 0 (the bad state would never end)")

    @property
    def mean_loss(self) -> float:
        """Return the long-run loss rate of the chain (stationary average)."""
        if self.p == 0.0:
            return self.loss_good
        pi_bad = self.p / (self.p + self.r)
        return pi_bad * self.loss_bad + (1.0 - pi_bad) * self.loss_good

    @property
    def mean_bad_run(self) -> float:
        """Return the mean number of consecutive packets spent in the bad state (``1/r``)."""
        return float("inf") if self.r == 0.0 else 1.0 / self.r


def parse_ge(text: str) -> GilbertElliott:
    """Parse ``"p,r[,loss_bad[,loss_good]]"`` (netem's ``gemodel`` order) into a model.

    Returns the :class:`GilbertElliott`; raises :class:`ConfigError` on bad syntax or values.
    """
    parts = [s.strip() for s in text.split(",") if s.strip()]
    if not 2 <= len(parts) <= 4:
        raise ConfigError(f"--ge wants p,r[,loss_bad[,loss_good]], got {text!r}")
    try:
        vals = [float(s) for s in parts]
    except ValueError:
        raise ConfigError(f"--ge values must be numbers, got {text!r}") from None
    names = ("p", "r", "loss_bad", "loss_good")
    return GilbertElliott(**dict(zip(names, vals)))


@dataclass(frozen=True, slots=True, kw_only=True)
class PathConfig:
    """Impairment of one direction of the link.

    delay_ms: one-way propagation delay (default 0).
    jitter_ms: half-width of the uniform delay variation added per packet (default 0).
    reorder: allow a jittered packet to overtake an earlier one (default False).
    loss: Bernoulli loss probability per packet (default 0); exclusive with ``ge``.
    ge: Gilbert-Elliott loss model (default None).
    rate_kbps: bottleneck rate in kilobits/s (1000 bit/s), None = unlimited (default).
    burst_bytes: token bucket depth; a packet larger than it still passes at the line rate
        (default 1500: pure pacing at the bottleneck rate).
    queue_packets: bottleneck queue limit in packets before tail drop (default 1000).
    """

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    reorder: bool = False
    loss: float = 0.0
    ge: GilbertElliott | None = None
    rate_kbps: float | None = None
    burst_bytes: int = 1500
    queue_packets: int = 1000

    def __post_init__(self) -> None:
        if not self.delay_ms >= 0.0 or self.delay_ms > 60_000:
            raise ConfigError(f"delay_ms must be in [0, 60000], got {self.delay_ms!r}")
        if not self.jitter_ms >= 0.0 or self.jitter_ms > 60_000:
            raise ConfigError(f"jitter_ms must be in [0, 60000], got {self.jitter_ms!r}")
        if not 0.0 <= self.loss <= 1.0:
            raise ConfigError(f"loss must be a probability in [0, 1], got {self.loss!r}")
        if self.ge is not None and self.loss > 0.0:
            raise ConfigError("give either loss (Bernoulli) or ge (Gilbert-Elliott), not both")
        if self.rate_kbps is not None and not self.rate_kbps > 0.0:
            raise ConfigError(f"rate_kbps must be > 0 or None, got {self.rate_kbps!r}")
        if self.burst_bytes < 1:
            raise ConfigError(f"burst_bytes must be >= 1, got {self.burst_bytes!r}")
        if self.queue_packets < 1:
            raise ConfigError(f"queue_packets must be >= 1, got {self.queue_packets!r}")

    @property
    def mean_loss(self) -> float:
        """Return the long-run random loss rate of this direction (queue drops excluded)."""
        return self.ge.mean_loss if self.ge is not None else self.loss

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict; :meth:`from_dict` inverts it."""
        d: dict[str, object] = {
            "delay_ms": self.delay_ms, "jitter_ms": self.jitter_ms, "reorder": self.reorder,
            "loss": self.loss, "rate_kbps": self.rate_kbps, "burst_bytes": self.burst_bytes,
            "queue_packets": self.queue_packets, "ge": None,
        }
        if self.ge is not None:
            d["ge"] = {"p": self.ge.p, "r": self.ge.r, "loss_bad": self.ge.loss_bad,
                       "loss_good": self.ge.loss_good}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> PathConfig:
        """Build a config from :meth:`to_dict` output; raises :class:`ConfigError`."""
        d = dict(d)
        ge = d.pop("ge", None)
        try:
            # d is parsed JSON: a wrong field name or type is the TypeError caught below
            cfg = cls(**d)  # type: ignore[arg-type]
        except TypeError as e:
            raise ConfigError(f"bad path config: {e}") from None
        if ge is not None:
            if not isinstance(ge, dict):
                raise ConfigError("ge must be a mapping")
            cfg = replace(cfg, ge=GilbertElliott(**ge))
        return cfg


@dataclass(frozen=True, slots=True, kw_only=True)
class WanLinkConfig:
    """Both directions of the emulated WAN link plus the seed of its randomness (the
    simulator's :class:`clutchcall.sim.link.LinkConfig` is one direction of its modelled link).

    uplink: caller -> edge impairment; downlink: edge -> caller impairment.
    seed: seed of every random stream (default 0).
    """

    uplink: PathConfig = field(default_factory=PathConfig)
    downlink: PathConfig = field(default_factory=PathConfig)
    seed: int = 0

    @classmethod
    def symmetric(cls, *, rtt_ms: float = 0.0, jitter_ms: float = 0.0, loss: float = 0.0,
                  ge: GilbertElliott | None = None, rate_kbps: float | None = None,
                  reorder: bool = False, burst_bytes: int = 1500, queue_packets: int = 1000,
                  seed: int = 0) -> WanLinkConfig:
        """Return a link whose two directions each get half the RTT and the same impairment.

        Raises :class:`ConfigError` on an invalid value.
        """
        if not rtt_ms >= 0.0:
            raise ConfigError(f"rtt_ms must be >= 0, got {rtt_ms!r}")
        path = PathConfig(delay_ms=rtt_ms / 2.0, jitter_ms=jitter_ms, loss=loss, ge=ge,
                          rate_kbps=rate_kbps, reorder=reorder, burst_bytes=burst_bytes,
                          queue_packets=queue_packets)
        return cls(uplink=path, downlink=path, seed=int(seed))

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict; :meth:`from_dict` inverts it."""
        return {"uplink": self.uplink.to_dict(), "downlink": self.downlink.to_dict(),
                "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> WanLinkConfig:
        """Build a link config from :meth:`to_dict` output; raises :class:`ConfigError`."""
        try:
            up, down, seed = d["uplink"], d["downlink"], d.get("seed", 0)
        except KeyError as e:
            raise ConfigError(f"link config lacks {e}") from None
        if not isinstance(up, dict) or not isinstance(down, dict) or not isinstance(seed, int):
            raise ConfigError("link config: uplink/downlink must be mappings, seed an int")
        return cls(uplink=PathConfig.from_dict(up), downlink=PathConfig.from_dict(down),
                   seed=seed)


@dataclass(slots=True)
class PathStats:
    """Counters of one direction: packets/bytes in, random losses, queue drops, delivered
    (admitted by the model); the forwarder adds write errors and delay-line overflows."""

    packets: int = 0
    bytes: int = 0
    lost: int = 0
    queue_dropped: int = 0
    delivered: int = 0
    write_errors: int = 0
    overflow: int = 0

    def to_dict(self) -> dict[str, int]:
        """Return the counters as a dict."""
        return {"packets": self.packets, "bytes": self.bytes, "lost": self.lost,
                "queue_dropped": self.queue_dropped, "delivered": self.delivered,
                "write_errors": self.write_errors, "overflow": self.overflow}


class PathModel:
    """One direction's impairment state; see the module docstring for the stages."""

    def __init__(self, cfg: PathConfig, *, seed: int = 0, name: str = "path") -> None:
        self.cfg = cfg
        self.name = name
        self.stats = PathStats()
        self._loss_rng = random.Random(f"clutchcall.netem:{seed}:{name}:loss")
        self._jitter_rng = random.Random(f"clutchcall.netem:{seed}:{name}:jitter")
        self._bad = False
        self._delay = cfg.delay_ms / 1000.0
        self._jitter = cfg.jitter_ms / 1000.0
        self._rate = None if cfg.rate_kbps is None else cfg.rate_kbps * 1000.0 / 8.0  # B/s
        self._tokens = float(cfg.burst_bytes)
        self._t_tokens = float("-inf")  # time at which _tokens was valid
        self._last_departure = float("-inf")
        self._queue: deque[float] = deque()  # departure times of packets still queued
        self._last_release = float("-inf")
        self._last_now = float("-inf")

    def _lose(self) -> bool:
        ge = self.cfg.ge
        if ge is None:
            return self.cfg.loss > 0.0 and self._loss_rng.random() < self.cfg.loss
        rng = self._loss_rng
        lost = rng.random() < (ge.loss_bad if self._bad else ge.loss_good)
        if self._bad:
            if rng.random() < ge.r:
                self._bad = False
        elif rng.random() < ge.p:
            self._bad = True
        return lost

    def _depart(self, now: float, size: int) -> float | None:
        rate = self._rate
        if rate is None:
            return now
        q = self._queue
        while q and q[0] <= now:
            q.popleft()
        if len(q) >= self.cfg.queue_packets:
            return None
        start = max(now, self._last_departure)
        depth = float(max(self.cfg.burst_bytes, size))
        tokens = min(depth, self._tokens + (start - self._t_tokens) * rate)
        if tokens >= size:
            depart = start
            self._tokens = tokens - size
        else:
            depart = start + (size - tokens) / rate
            self._tokens = 0.0
        self._t_tokens = depart
        self._last_departure = depart
        q.append(depart)
        return depart

    def admit(self, now: float, size: int) -> float | None:
        """Admit a packet of ``size`` bytes arriving at ``now`` (seconds, monotonic).

        Returns the time it leaves the far end of this direction, or ``None`` if it is lost
        (random loss or bottleneck tail drop; :attr:`stats` says which). Raises
        :class:`LocalProtocolError` if ``now`` goes backwards or ``size`` is not positive.
        """
        if now < self._last_now:
            raise LocalProtocolError(f"time went backwards: {now} < {self._last_now}")
        if size <= 0:
            raise LocalProtocolError(f"packet size must be > 0, got {size}")
        self._last_now = now
        st = self.stats
        st.packets += 1
        st.bytes += size
        if self._lose():
            st.lost += 1
            return None
        depart = self._depart(now, size)
        if depart is None:
            st.queue_dropped += 1
            return None
        delay = self._delay
        if self._jitter > 0.0:
            delay = max(0.0, delay + self._jitter_rng.uniform(-self._jitter, self._jitter))
        release = depart + delay
        if not self.cfg.reorder:
            release = max(release, self._last_release)
            self._last_release = release
        st.delivered += 1
        return release
