"""Same config, calls and seed -> byte-identical Parquet; a different seed -> different."""

from __future__ import annotations

from pathlib import Path

from clutchcall.sim.calls import synthetic_call
from clutchcall.sim.config import ModelConfig, NetConfig, SimConfig
from clutchcall.sim.metrics import tables, write_tables
from clutchcall.sim.world import simulate_call


def _write(out: Path, seed: int, transport: str = "quic") -> dict[str, bytes]:
    calls = [synthetic_call(s, 60) for s in (1, 2)]
    cfg = SimConfig(net=NetConfig.symmetric(transport=transport, rtt_ms=60, loss=0.03,
                                            jitter_ms=4), model=ModelConfig(), seed=seed)
    write_tables(tables([simulate_call(c, cfg) for c in calls], cfg), str(out))
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.parquet"))}


def test_same_seed_gives_byte_identical_parquet(tmp_path: Path) -> None:
    for transport in ("quic", "tcp"):
        a = _write(tmp_path / f"a-{transport}", 7, transport)
        b = _write(tmp_path / f"b-{transport}", 7, transport)
        assert set(a) == {"turns.parquet", "segments.parquet", "calls.parquet"}
        assert a == b


def test_different_seeds_differ(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", 7)
    b = _write(tmp_path / "b", 8)
    assert a["turns.parquet"] != b["turns.parquet"]
    assert a["calls.parquet"] != b["calls.parquet"]


def test_parallel_sweep_equals_serial_sweep() -> None:
    from clutchcall.sim.runner import sweep

    calls = [synthetic_call(s, 30) for s in (1, 2)]
    base = SimConfig(net=NetConfig.symmetric(loss=0.02, jitter_ms=2), seed=3)
    grid = {"response_min_speech_ms": [200, 600], "barge_confirm_ms": [0, 300]}
    serial = sweep(calls, base, grid, processes=1, progress=False)
    parallel = sweep(calls, base, grid, processes=2, progress=False)
    assert serial.equals(parallel)
    assert serial.height == 4
