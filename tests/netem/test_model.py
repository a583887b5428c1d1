"""The pure impairment model: loss statistics, bursts, jitter, ordering, bottleneck, config."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clutchcall.engine.errors import ConfigError, LocalProtocolError
from clutchcall.netem.model import GilbertElliott, PathConfig, PathModel, WanLinkConfig, parse_ge


def _losses(cfg: PathConfig, n: int, seed: int = 0) -> list[bool]:
    m = PathModel(cfg, seed=seed, name="uplink")
    return [m.admit(i * 0.001, 100) is None for i in range(n)]


def _runs(lost: list[bool]) -> list[int]:
    runs, cur = [], 0
    for x in lost:
        if x:
            cur += 1
        elif cur:
            runs.append(cur)
            cur = 0
    if cur:
        runs.append(cur)
    return runs


@pytest.mark.parametrize("p", [0.01, 0.1, 0.3])
def test_bernoulli_rate_within_binomial_bound(p: float) -> None:
    n = 20000
    lost = sum(_losses(PathConfig(loss=p), n, seed=7))
    sd = math.sqrt(n * p * (1 - p))
    assert abs(lost - n * p) < 4.5 * sd


def test_zero_and_full_loss() -> None:
    assert not any(_losses(PathConfig(loss=0.0), 1000))
    assert all(_losses(PathConfig(loss=1.0), 1000))


def test_loss_is_deterministic_per_seed_and_independent_of_timing() -> None:
    cfg = PathConfig(loss=0.2, jitter_ms=5.0)
    a = _losses(cfg, 5000, seed=3)
    b = _losses(cfg, 5000, seed=3)
    c = _losses(cfg, 5000, seed=4)
    m = PathModel(cfg, seed=3, name="uplink")
    d = [m.admit(i * 0.017, 1400) is None for i in range(5000)]  # other times and sizes
    assert a == b == d
    assert a != c


def test_gilbert_elliott_burst_length_and_rate() -> None:
    ge = GilbertElliott(p=0.02, r=0.25)
    n = 60000
    lost = _losses(PathConfig(ge=ge), n, seed=11)
    runs = _runs(lost)
    mean_run = sum(runs) / len(runs)
    # geometric burst length: mean 1/r = 4, sd sqrt(1-r)/r; 4.5 sigma of the mean
    sd_mean = math.sqrt(1 - ge.r) / ge.r / math.sqrt(len(runs))
    assert abs(mean_run - 1 / ge.r) < 4.5 * sd_mean
    assert ge.mean_loss == pytest.approx(0.02 / 0.27)
    assert abs(sum(lost) / n - ge.mean_loss) < 0.015
    # Bernoulli at the same rate has far shorter runs: the bursts are real
    bern_runs = _runs(_losses(PathConfig(loss=ge.mean_loss), n, seed=11))
    assert sum(bern_runs) / len(bern_runs) < 1.2


def test_gilbert_elliott_partial_loss_states() -> None:
    ge = GilbertElliott(p=0.1, r=0.1, loss_bad=0.5, loss_good=0.02)
    assert ge.mean_loss == pytest.approx(0.5 * 0.5 + 0.5 * 0.02)
    lost = _losses(PathConfig(ge=ge), 40000, seed=5)
    assert abs(sum(lost) / len(lost) - ge.mean_loss) < 0.03


def test_delay_and_jitter_bounds_without_reordering() -> None:
    m = PathModel(PathConfig(delay_ms=25.0, jitter_ms=10.0), seed=1)
    releases = []
    for i in range(2000):
        now = i * 0.002  # closer than the jitter: reordering would happen if allowed
        r = m.admit(now, 200)
        assert r is not None
        assert now + 0.015 - 1e-9 <= r
        releases.append(r)
    assert releases == sorted(releases)
    # spaced far apart, the delay is exactly within [d - J, d + J] and spread over it
    m2 = PathModel(PathConfig(delay_ms=25.0, jitter_ms=10.0), seed=1)
    delays = [m2.admit(i * 1.0, 200) - i * 1.0 for i in range(2000)]  # type: ignore[operator]
    assert 0.015 - 1e-9 <= min(delays) < 0.016 and 0.034 < max(delays) <= 0.035 + 1e-9
    assert sum(delays) / len(delays) == pytest.approx(0.025, abs=0.0008)


def test_reorder_allows_overtaking() -> None:
    m = PathModel(PathConfig(delay_ms=25.0, jitter_ms=10.0, reorder=True), seed=1)
    rel = [m.admit(i * 0.002, 200) for i in range(500)]
    assert any(b < a for a, b in itertools.pairwise(rel))  # type: ignore[operator]


def test_jitter_never_negative_delay() -> None:
    m = PathModel(PathConfig(delay_ms=1.0, jitter_ms=5.0, reorder=True), seed=2)
    for i in range(1000):
        r = m.admit(float(i), 100)
        assert r is not None and r >= float(i)


def test_token_bucket_paces_at_rate() -> None:
    rate_kbps = 1000.0  # 125000 B/s
    m = PathModel(PathConfig(rate_kbps=rate_kbps, burst_bytes=1500), seed=0)
    deps = [m.admit(0.0, 1250) for _ in range(100)]  # all arrive at once
    assert deps[0] == 0.0  # the bucket starts full
    gaps = [b - a for a, b in itertools.pairwise(deps)]  # type: ignore[operator]
    assert all(g == pytest.approx(0.01) for g in gaps[1:])  # 1250 B at 125000 B/s
    assert deps[-1] == pytest.approx(99 * 0.01 - 250 / 125000, abs=1e-9)


def test_token_bucket_idle_refill_and_burst() -> None:
    m = PathModel(PathConfig(rate_kbps=800.0, burst_bytes=10000), seed=0)  # 100000 B/s
    deps = [m.admit(0.0, 1000) for _ in range(10)]
    assert deps == [0.0] * 10  # the burst passes at once
    assert m.admit(0.0, 1000) == pytest.approx(0.01)
    # after a long idle time the bucket is full again, but never above its depth
    deps = [m.admit(10.0, 1000) for _ in range(11)]
    assert deps[:10] == [10.0] * 10 and deps[10] == pytest.approx(10.01)


def test_queue_tail_drop() -> None:
    m = PathModel(PathConfig(rate_kbps=80.0, queue_packets=5), seed=0)  # 10000 B/s
    res = [m.admit(0.0, 1000) for _ in range(10)]
    # the first leaves at once (the bucket starts full), five wait, the rest are dropped
    assert [r is None for r in res] == [False] * 6 + [True] * 4
    assert m.stats.queue_dropped == 4 and m.stats.delivered == 6
    # once the queue drained, packets are accepted again
    assert m.admit(1.0, 1000) is not None


def test_stats_and_misuse() -> None:
    m = PathModel(PathConfig(loss=0.5), seed=0)
    for i in range(100):
        m.admit(float(i), 10)
    s = m.stats.to_dict()
    assert s["packets"] == 100 and s["bytes"] == 1000 and s["lost"] + s["delivered"] == 100
    with pytest.raises(LocalProtocolError):
        m.admit(50.0, 10)
    with pytest.raises(LocalProtocolError):
        m.admit(200.0, 0)


@pytest.mark.parametrize("kwargs", [
    {"loss": -0.1}, {"loss": 1.5}, {"delay_ms": -1}, {"jitter_ms": -1},
    {"rate_kbps": 0}, {"queue_packets": 0}, {"burst_bytes": 0},
    {"loss": 0.1, "ge": GilbertElliott(p=0.1, r=0.5)},
])
def test_bad_path_config(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        PathConfig(**kwargs)  # type: ignore[arg-type]


def test_parse_ge_and_errors() -> None:
    assert parse_ge("0.01,0.3") == GilbertElliott(p=0.01, r=0.3)
    assert parse_ge("0.01, 0.3, 0.8, 0.001") == GilbertElliott(p=0.01, r=0.3, loss_bad=0.8,
                                                               loss_good=0.001)
    for bad in ("0.1", "a,b", "0.1,0.2,0.3,0.4,0.5", "0.1,1.5", "0.1,0"):
        with pytest.raises(ConfigError):
            parse_ge(bad)


def test_link_config_roundtrip_and_symmetric() -> None:
    link = WanLinkConfig.symmetric(rtt_ms=50, jitter_ms=2, ge=GilbertElliott(p=0.01, r=0.3),
                                rate_kbps=2000, seed=9)
    assert link.uplink.delay_ms == link.downlink.delay_ms == 25.0
    assert WanLinkConfig.from_dict(link.to_dict()) == link
    with pytest.raises(ConfigError):
        WanLinkConfig.symmetric(rtt_ms=-1)
    with pytest.raises(ConfigError):
        WanLinkConfig.from_dict({"uplink": {}})
    with pytest.raises(ConfigError):
        WanLinkConfig.from_dict({"uplink": {"bogus": 1}, "downlink": {}})


# -- properties over arbitrary packet sequences -----------------------------------------------

_packets = st.lists(st.tuples(st.floats(0.0, 0.05), st.integers(20, 1500)), min_size=1,
                    max_size=200)


def _feed(cfg: PathConfig, pkts: list[tuple[float, int]], seed: int = 0
          ) -> list[tuple[float, int, float | None]]:
    m = PathModel(cfg, seed=seed)
    now, out = 0.0, []
    for dt, size in pkts:
        now += dt
        out.append((now, size, m.admit(now, size)))
    return out


@settings(max_examples=150, deadline=None)
@given(_packets, st.floats(0.0, 100.0), st.floats(0.0, 30.0), st.floats(0.0, 0.5),
       st.integers(0, 2**32))
def test_prop_no_reorder_and_never_early(pkts: list[tuple[float, int]], delay: float,
                                         jitter: float, loss: float, seed: int) -> None:
    cfg = PathConfig(delay_ms=delay, jitter_ms=jitter, loss=loss)
    out = _feed(cfg, pkts, seed)
    rel = [r for _, _, r in out if r is not None]
    assert rel == sorted(rel)
    for now, _, r in out:
        if r is not None:
            assert r >= now + max(0.0, delay - jitter) / 1000 - 1e-9
    assert out == _feed(cfg, pkts, seed)  # a pure function of its inputs


@settings(max_examples=150, deadline=None)
@given(_packets, st.floats(8.0, 20000.0), st.integers(1, 20000), st.integers(1, 50))
def test_prop_token_bucket_conforms(pkts: list[tuple[float, int]], rate_kbps: float,
                                    burst: int, qlim: int) -> None:
    cfg = PathConfig(rate_kbps=rate_kbps, burst_bytes=burst, queue_packets=qlim)
    out = _feed(cfg, pkts)
    rate = rate_kbps * 1000 / 8
    dep = [(r, size) for now, size, r in out if r is not None]
    for now, _, r in out:
        assert r is None or r >= now
    # any window of departures carries at most one bucket (plus one packet) + rate * length
    for i in range(len(dep)):
        total = 0
        for j in range(i, len(dep)):
            total += dep[j][1]
            span = dep[j][0] - dep[i][0]
            assert total <= max(burst, 1500) + 1500 + rate * span + 1e-6
