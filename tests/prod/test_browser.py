"""The browser caller in real headless Chromium: ``clutchcall serve`` serves the page over HTTPS,
Chromium's fake microphone plays a corpus call, and the page calls the edge over WebTransport +
MoQT + Opus.

Asserted: the page connects over WebTransport (with the self-signed certificate accepted only
through ``serverCertificateHashes``: a wrong hash fails), the edge sees the caller's turns
(per-call summary with ``transport == "webtransport"``, /metrics), agent audio reaches the page
(RMS of what the page's playout worklet really played above a floor), a turn latency shows on
the page, a barge-in clears the playout; a bad token closes the session with MoQT's
UNAUTHORIZED code, as on raw QUIC; the forced PCM16 fallback, opened over the plain-HTTP
loopback URL that ``serve`` prints first, plays the agent too. A screenshot is saved (its path
is printed).

Chromium comes from Debian (``/usr/bin/chromium``) and is driven by Playwright for Python on
that executable (no browser download); both are installed by ``.ci/setup``. The fake
microphone wants a 48 kHz 16-bit WAV: it is made from the corpus call's labelled segments (a
turn, then an interruption that lands on the agent's reply) with soxr into the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clutchcall.prod.caller.browser import CHROMIUM, chromium_flags, write_fake_mic_wav

pytestmark = pytest.mark.timeout(180)

CORPUS = Path(__file__).resolve().parents[2] / "traces" / "corpus"
CALL = "call0071_clean16"  # corpus v3: a turn (373-2652 ms), then an interruption with its continuation (5969-9278 ms)
#: what the page played must be louder than this RMS (full scale 1.0; -40 dBFS): the agent's
#: espeak reply plays near -20 dBFS, digital silence or a stuck decoder stays far below
PLAYED_RMS_FLOOR = 0.01


def _require_browser() -> Any:
    """Return playwright.sync_api; fail (not skip: CI must run this) if Chromium is missing."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not found: run .ci/setup (installs Debian's chromium)")
    try:
        from playwright import sync_api
    except ImportError:
        pytest.fail("playwright is not installed: run .ci/setup (pip install -e '.[test]')")
    return sync_api


def make_mic_wav(path: Path) -> float:
    """Write the fake microphone's WAV (48 kHz, 16-bit mono) from the corpus call's labelled
    segments: 0.3 s silence, its turn, 1.5 s silence, its interruption (which then lands on the
    agent's reply: a barge-in), 4 s silence. Chromium loops the file. Returns its seconds."""
    with wave.open(str(CORPUS / f"{CALL}.wav")) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    labels = json.loads((CORPUS / f"{CALL}.json").read_text())
    seg = {s["kind"]: (s["start_ms"], s["end_ms"]) for s in labels["segments"]}

    def cut(a: int, b: int) -> np.ndarray:
        return x[a * rate // 1000: b * rate // 1000]

    def sil(ms: int) -> np.ndarray:
        return np.zeros(ms * rate // 1000, dtype="<i2")

    y = np.concatenate([sil(300), cut(*seg["turn"]), sil(1500), cut(*seg["interruption"]), sil(4000)])
    return write_fake_mic_wav(y, rate, path)


@pytest.fixture
def edge(tmp_path: Path) -> Any:
    """A real ``clutchcall serve`` with the browser caller on a free port; yields its ready
    line (plus ``proc`` and ``summary``); stopped with SIGINT at the end (also on failure)."""
    summary = tmp_path / "summary.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "clutchcall", "serve", "--ready-json", "--quic-port", "0", "--ws-port", "0",
         "--metrics-port", "0", "--web-port", "0", "--no-trace", "--cert-dir", str(tmp_path / "tls"),
         "--summary-json", str(summary), "--tokens", "2", "--seconds", "170"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=open(tmp_path / "edge.log", "w"), text=True)  # noqa: SIM115
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, (tmp_path / "edge.log").read_text()[-3000:]
        info = json.loads(line)
        info["proc"], info["summary"] = proc, summary
        yield info
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _page_state(page: Any) -> dict[str, Any]:
    return page.evaluate("() => JSON.parse(JSON.stringify(window.clutchcall))")


def _wait(page: Any, pred: Any, timeout_s: float) -> dict[str, Any]:
    end = time.monotonic() + timeout_s
    st = _page_state(page)
    while not pred(st) and time.monotonic() < end:
        time.sleep(0.25)
        st = _page_state(page)
    return st


def test_browser_call_over_webtransport(edge: dict[str, Any], tmp_path: Path) -> None:
    sync_api = _require_browser()
    mic = tmp_path / "mic48k.wav"
    make_mic_wav(mic)
    url = edge["web_url"]
    assert url.startswith(f"https://127.0.0.1:{edge['web_port']}/#") and "hash=" in url
    shot = tmp_path / "browser_call.png"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=chromium_flags(mic))
        try:
            # the page over HTTPS with the self-signed certificate: Playwright accepts it for
            # the page; WebTransport ignores that and needs serverCertificateHashes (below)
            ctx = browser.new_context(ignore_https_errors=True)
            page = ctx.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))
            page.goto(url)
            page.click("#call")
            st = _wait(page, lambda s: s["connected"] or s["error"], 20)
            assert st["connected"], (st, console)
            assert st["transport"] == "webtransport" and st["codec"] == "opus/48000/20"
            # a turn, its reply, the interruption on the reply (barge-in), its reply; the edge has
            # committed both turns (commit events) before the call is hung up below
            st = _wait(page, lambda s: s["playout"]["clears"] >= 1 and s["commits"] >= 2 and any(
                t["mouthToEarMs"] is not None for t in s["turns"]) and s["playout"]["played"] >= 48000, 40)
            assert st["commits"] >= 2, (st["controls"], console)
            lat = [t["mouthToEarMs"] for t in st["turns"] if t["mouthToEarMs"] is not None]
            assert lat, (st, console)
            assert all(100 < ms < 5000 for ms in lat), lat
            assert st["playout"]["played"] >= 48000, st["playout"]  # >= 1 s of agent audio played
            assert st["playout"]["rms"] > PLAYED_RMS_FLOOR, st["playout"]
            # barge-in: the edge's clear_playout reached the page and emptied its jitter buffer
            assert any(c["type"] == "clear_playout" for c in st["controls"]), st["controls"]
            assert any(c["type"] == "cancel" for c in st["controls"]), st["controls"]
            assert st["playout"]["clears"] >= 1
            # the latency shows on the page itself
            cells = page.locator("td.latency").all_inner_texts()
            assert any(re.fullmatch(r"\d+ ms", c) for c in cells), cells
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{edge['metrics_port']}/metrics", timeout=5).read()
            assert b'clutchcall_calls_total{transport="webtransport"} 1.0' in metrics
            page.screenshot(path=str(shot), full_page=True)
            print(f"\nbrowser screenshot: {shot}")
            if os.environ.get("CLUTCHCALL_ARTIFACTS"):  # CI: keep a copy with the artefacts
                Path(os.environ["CLUTCHCALL_ARTIFACTS"]).mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, Path(os.environ["CLUTCHCALL_ARTIFACTS"]) / shot.name)
            page.click("#hangup")
            st = _wait(page, lambda s: s["closed"] is not None, 10)
            assert st["closed"] is not None

            # a wrong certificate hash: WebTransport refuses the edge (the hash is what is trusted)
            bad = ctx.new_page()
            bad.goto(re.sub(r"hash=[^&]+", "hash=" + "A" * 43, edge["web_url"]))
            bad.click("#call")
            st = _wait(bad, lambda s: s["error"] or s["connected"], 15)
            assert st["error"] and not st["connected"], st

            # a forged token: the edge closes the MoQT session with UNAUTHORIZED (0x2), the
            # same termination code a raw-QUIC caller gets, seen by the page in closeCode
            from clutchcall.prod.ingress.auth import TokenAuthority

            token = TokenAuthority(b"not-the-edge-key-0123456789").issue("call-0-1", time.time() + 600)
            forged = ctx.new_page()
            forged.goto(re.sub(r"call=[^&]+&token=[^&]+", f"call=call-0-1&token={token}", edge["web_url"]))
            forged.click("#call")
            st = _wait(forged, lambda s: s["closed"] is not None or s["error"], 15)
            assert st["closed"] is not None and st["closed"]["code"] == 0x2, st

            # the PCM16 fallback (where WebCodecs has no Opus), forced: a turn and its reply; the
            # page opened as a person does, over the plain-HTTP loopback URL `serve` prints first
            # (http://127.0.0.1 is a secure context: no certificate warning, WebTransport pinned)
            assert edge["web_url_http"].startswith("http://127.0.0.1:"), edge["web_url_http"]
            pcm = ctx.new_page()
            pcm.goto(re.sub(r"call=[^&]+&token=[^&]+", f"call=call-0-0&token={edge['tokens']['call-0-0']}",
                            edge["web_url_http"]) + "&codec=pcm16")
            pcm.click("#call")
            st = _wait(pcm, lambda s: s["playout"]["played"] >= 24000 or s["error"] or s["closed"], 25)
            assert st["codec"] == "pcm16/48000/20" and st["playout"]["played"] >= 24000, st
            assert st["playout"]["rms"] > PLAYED_RMS_FLOOR, st["playout"]
            pcm.click("#hangup")
        finally:
            browser.close()
    # the edge saw the browser call's turns: its per-call summary (written on stop)
    proc = edge["proc"]
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0
    stopped = json.loads(rest.strip().splitlines()[-1])
    assert stopped["webtransport"]["calls_started"] == 2
    assert stopped["webtransport"]["refused_forged"] >= 1
    calls = json.loads(edge["summary"].read_text())["calls"]
    wt = [c for c in calls if c["transport"] == "webtransport"]
    assert [(c["call_id"], c["codec"], c["rate"]) for c in wt] == [("call-0", "opus", 48000),
                                                                   ("call-0-0", "pcm16", 48000)]
    assert len(wt[0]["turns"]) >= 2 and all(t["turn_latency_ms"] is not None for t in wt[0]["turns"][:1])
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_browser_caller_cli_reports_latency_by_the_callers_definition(tmp_path: Path) -> None:
    """``clutchcall call --transport browser`` (its own loopback echo edge with the page): the
    page in Chromium speaks the WAV; the summary's mouth-to-ear comes from webrtcvad turn ends
    on what the page captured (as the Python caller's), the page's own figures beside it."""
    _require_browser()
    from clutchcall.prod.caller.speech import dialogue

    wav = tmp_path / "two_turns.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(dialogue(["hello there", "how are you today"], 16000, gap_s=0.8))
    out = subprocess.run([sys.executable, "-m", "clutchcall", "call", "--wav", str(wav), "--transport", "browser",
                          "--json", "--tail", "1.0"], capture_output=True, text=True, timeout=90, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    s = json.loads(out.stdout)
    assert s["transport"] == "webtransport (browser)" and (s["codec"], s["rate"]) == ("opus", 48000)
    assert s["frames_sent"] > 100 and s["agent_frames_received"] > 20
    lat = [t["mouth_to_ear_ms"] for t in s["turns"] if t["mouth_to_ear_ms"] is not None]
    page = [t["page_mouth_to_ear_ms"] for t in s["page_turns"] if t["page_mouth_to_ear_ms"] is not None]
    assert len(lat) >= 2 and len(page) >= 2, s
    # the echo replays after 400 ms of caller silence: neither measure can be below ~300 ms
    assert all(250 < ms < 3000 for ms in lat + page), s
    assert s["mouth_to_ear_ms_p50"] == pytest.approx(sorted(lat)[len(lat) // 2], abs=200)


def test_caller_turn_latencies_on_page_timelines() -> None:
    """The measurement itself (no browser): webrtcvad turn ends on 48 kHz audio, the page's
    frame times, the first agent arrival at or after each turn's last speech frame."""
    from clutchcall.prod.caller.audio import speech_flags, turn_ends
    from clutchcall.prod.caller.browser import caller_turn_latencies
    from clutchcall.prod.caller.speech import dialogue

    pcm16k = dialogue(["hello there", "how are you today"], 16000, gap_s=0.8) + bytes(16000)
    import soxr

    x48 = soxr.resample(np.frombuffer(pcm16k, dtype="<i2").astype(np.float32), 16000, 48000).astype("<i2")
    n = len(x48) // 960
    frames = [1000.0 + 20.0 * k + (7.0 if k % 5 == 0 else 0.0) for k in range(n)]  # jittery capture
    ends = turn_ends(speech_flags(pcm16k, 16000, 20), 20, 300)
    assert len(ends) == 2
    agent = [frames[ends[0]] + 333.0, frames[ends[0]] + 353.0, frames[ends[1]] + 410.5]
    got = caller_turn_latencies(x48[: n * 960], frames, agent)
    # resampling may move a boundary by a frame: the same turns, the same arrivals
    assert len(got) == 2 and got[0] == pytest.approx(333.0, abs=40) and got[1] == pytest.approx(410.5, abs=40)
    assert caller_turn_latencies(x48[: n * 960], frames, []) == [None, None]
