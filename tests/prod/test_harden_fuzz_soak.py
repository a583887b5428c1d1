"""Issue 19 item 6: a bounded fuzz suite and a soak, each against a real ``clutchcall serve``
child process on loopback (``clutchcall bench fuzz`` / ``clutchcall bench soak`` run the same
code with larger numbers)."""

from __future__ import annotations

import random

import pytest

from clutchcall.prod.edge.cmd_bench_fuzz import FAMILIES, mutate_token, run_fuzz, same_token_fields
from clutchcall.prod.edge.cmd_bench_soak import run_soak
from clutchcall.prod.ingress.auth import AuthError, TokenAuthority

pytestmark = pytest.mark.timeout(150)


def test_token_mutations_are_refused_unless_they_decode_to_the_same_token() -> None:
    a = TokenAuthority(b"k" * 32)
    good = a.issue("call-1", 2_000_000_000)
    rng = random.Random(7)
    differing = 0
    for _ in range(300):
        bad = mutate_token(rng, good)
        if same_token_fields(bad, good):
            assert a.verify(bad, 1_000_000_000) == "call-1"  # base64 spare bits: the same token
            continue
        differing += 1
        with pytest.raises(AuthError):
            a.verify(bad, 1_000_000_000)
    assert differing > 250


def test_fuzz_against_a_real_serve_only_typed_refusals_and_the_edge_survives() -> None:
    res = run_fuzz(cases=6, seed=19, budget_s=90)
    print({f: res["outcomes"][f] for f in FAMILIES}, res["wall_s"], "s")
    assert res["failures"] == [], res["failures"]
    assert res["alive"] and res["edge_errors"] == {}, res
    for fam in ("ws-json", "ws-token", "moqt-token", "moqt-control", "moqt-data"):
        assert sum(res["outcomes"][fam].values()) >= 6, (fam, res["outcomes"])
    # every mutated token was refused with a typed code (WS 1008; MoQT UNAUTHORIZED 0x2 or
    # MALFORMED_AUTH_TOKEN 0x16) unless it decoded to the original token
    assert set(res["outcomes"]["ws-token"]) <= {"1008", "None"}, res["outcomes"]["ws-token"]
    assert set(res["outcomes"]["moqt-token"]) <= {"2", "22", "None", "TimeoutError",
                                                  "ConnectionError"}, res["outcomes"]
    # after the fuzz, a real call on each transport works
    for name in ("quic", "ws"):
        call = res["after_calls"][name]
        assert call["frames_sent"] > 100 and call["agent_frames"] > 20, (name, call)


def test_soak_against_a_real_serve_loses_no_frame_and_writes_every_trace() -> None:
    res = run_soak(calls=3, seconds=4, transport="mixed", sample_s=0.5, settle_s=1.0)
    print({k: v for k, v in res.items() if k != "timeline"})
    assert res["calls_failed"] == 0 and res["caller_errors"] == [], res
    assert res["frames_sent"] >= 3 * 190 and res["frames_received"] == res["frames_sent"], res
    assert res["frames_lost"] == 0, res
    assert res["traces"] == 3, res
    for k in ("rss_kb", "fds"):
        assert set(res[k]) == {"start", "peak", "end"}
        assert res[k]["start"] > 0 and res[k]["peak"] >= res[k]["start"], res[k]
    assert res["fds"]["end"] <= res["fds"]["start"] + 4, res["fds"]  # the calls' sockets closed
    assert len(res["timeline"]) >= 8 and all(len(s) == 3 for s in res["timeline"])
