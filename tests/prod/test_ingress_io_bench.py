"""``clutchcall bench ingress-io`` runs end to end (tiny load): real callers in another process,
both I/O kinds, figures present; performance itself is measured by the benchmark, not here."""

from __future__ import annotations

import json

import pytest

from clutchcall.cli import main
from clutchcall.native import udpio

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize("path", ["handler", "direct"])
def test_bench_ingress_io_smoke(capsys, path) -> None:  # type: ignore[no-untyped-def]
    kinds = "asyncio,uring" if udpio.URING_BUILT else "asyncio"
    assert main(["bench", "ingress-io", "--calls", "2", "--seconds", "1.2", "--repeat", "1",
                 "--kinds", kinds, "--path", path, "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["path"] == path
    for kind in kinds.split(","):
        (run,) = res["runs"][kind]
        assert run["io"] == kind and run["connected"] == 2 and run["calls_started"] == 2
        # every frame but possibly the very last one (still in flight when the bench's 1.2 s
        # window closes) came back
        assert run["sent"] == 2 * 60 and run["sent"] - 1 <= run["echoed"] <= run["sent"]
        assert run["edge_added_frames"] > 0 and res[f"{kind}_rtt_ms_p50"] > 0
        assert res[f"{kind}_edge_added_ms_p50"] <= res[f"{kind}_rtt_ms_p99"]
    if udpio.URING_BUILT:
        assert res["runs"]["uring"][0]["reactor"]["rx_pkts"] > 120
        assert res["uring_vs_asyncio_rtt_ms_p50_ratio"] > 0
