"""Link model: loss processes, bottleneck, determinism, validation."""

from __future__ import annotations

import pytest

from clutchcall.engine.errors import ConfigError
from clutchcall.sim.link import Link, LinkConfig, direction_rngs


def _run(cfg: LinkConfig, seed: int, n: int = 20000, gap: float = 0.02) -> list[float | None]:
    link = Link(cfg, direction_rngs(seed)["uplink"])
    return [link.transmit(k * gap, 160) for k in range(n)]


def test_delay_is_half_rtt_without_jitter_or_loss() -> None:
    out = _run(LinkConfig(rtt_ms=80), 1, n=100)
    assert all(a == pytest.approx(k * 0.02 + 0.04) for k, a in enumerate(out))


def test_bernoulli_loss_rate() -> None:
    out = _run(LinkConfig(loss=0.05), 2)
    rate = sum(a is None for a in out) / len(out)
    assert 0.045 < rate < 0.055


def test_gilbert_elliott_bursts() -> None:
    p, r = 0.01, 0.25  # stationary loss p/(p+r) ~ 3.85 %, mean burst 1/r = 4 packets
    out = _run(LinkConfig(ge_p=p, ge_r=r), 3, n=100_000)
    lost = [a is None for a in out]
    rate = sum(lost) / len(lost)
    assert rate == pytest.approx(p / (p + r), rel=0.15)
    bursts, cur = [], 0
    for x in lost:
        if x:
            cur += 1
        elif cur:
            bursts.append(cur)
            cur = 0
    assert sum(bursts) / len(bursts) == pytest.approx(1 / r, rel=0.15)


def test_jitter_is_non_negative_with_the_configured_mean() -> None:
    cfg = LinkConfig(rtt_ms=50, jitter_ms=4)
    out = _run(cfg, 4)
    extra = [a - k * 0.02 - 0.025 for k, a in enumerate(out) if a is not None]
    assert min(extra) >= 0
    assert sum(extra) / len(extra) == pytest.approx(0.004, rel=0.05)


def test_bottleneck_serialises_and_tail_drops() -> None:
    link = Link(LinkConfig(rtt_ms=0, rate_kbps=8, queue_bytes=300), direction_rngs(1)["uplink"])
    # 8 kbit/s = 1 byte/ms: 100 bytes take 100 ms
    assert link.transmit(0.0, 100) == pytest.approx(0.1)
    assert link.transmit(0.0, 100) == pytest.approx(0.2)
    assert link.transmit(0.0, 100) == pytest.approx(0.3)
    assert link.transmit(0.0, 100) is None  # 300 bytes queued already
    assert link.transmit(1.0, 100) == pytest.approx(1.1)


def test_same_seed_same_draws_different_seed_differs() -> None:
    cfg = LinkConfig(loss=0.1, jitter_ms=3)
    assert _run(cfg, 7, 2000) == _run(cfg, 7, 2000)
    assert _run(cfg, 7, 2000) != _run(cfg, 8, 2000)


def test_directions_are_independent_streams() -> None:
    rngs = direction_rngs(5)
    assert rngs["uplink"].random() != rngs["downlink"].random()


@pytest.mark.parametrize("kw", [{"rtt_ms": -1}, {"loss": 1.5}, {"ge_p": 0.1, "ge_r": 0.0},
                                {"queue_bytes": 0}, {"jitter_ms": float("nan")}])
def test_bad_config_is_a_config_error(kw: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        LinkConfig(**kw)
