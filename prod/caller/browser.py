"""A real browser as the caller: headless Chromium runs the edge's page with a WAV as microphone.

Theory of operation
-------------------
:func:`browser_call` is ``clutchcall call --transport browser``: it turns the WAV into what
Chromium's fake capture device wants (48 kHz, 16-bit mono; :func:`write_fake_mic_wav`),
launches Debian's Chromium (``/usr/bin/chromium``) headless through Playwright for Python
(``executable_path``: no browser is ever downloaded) with the fake microphone playing that
file (Chromium loops it), opens the edge's page (:func:`page_url`: the call id, the token and
the certificate's SHA-256 for ``serverCertificateHashes`` in the fragment:
:func:`clutchcall.prod.web.server.page_url`), starts the call
and, after the WAV's length plus ``tail_s`` (silence appended to the file, which the fake
device loops), reads what the page measured (``window.clutchcall``:
frames sent, agent frames, what its playout played, each turn's mouth-to-ear latency), hangs up
and returns it in the shape of :meth:`~clutchcall.prod.caller.client.CallResult.summary`.

Mouth-to-ear turn latency is the Python caller's definition (the send time of a turn's last
speech frame -> arrival of the first agent audio after it), measured twice:

* ``mouth_to_ear_ms`` (the one to compare with ``--transport quic|ws``): the same turn ends as
  the Python caller finds them (:func:`~clutchcall.prod.caller.audio.speech_flags`, webrtcvad,
  and :func:`~clutchcall.prod.caller.audio.turn_ends`), run here on the audio the page really
  captured (``record=1``: after Chromium's echo canceller, noise suppression and gain control),
  with the page's own timelines (capture time of each frame, arrival of each agent object);
* ``page_mouth_to_ear_ms``: what the page shows a person, whose turn ends come from a simple
  energy VAD (``vad_dbfs``, -45 dBFS); it ends a turn at the last frame above that level, which
  on espeak-like speech is a frame or four earlier than webrtcvad's, so it reads higher.
"""

from __future__ import annotations

import base64
import statistics
import time
import urllib.parse
import wave
from pathlib import Path
from typing import Any

import numpy as np

CHROMIUM = "/usr/bin/chromium"
#: headless on a closed network (no background connections to Google hosts), as root
#: (--no-sandbox), microphone permission granted, audio without a user gesture; QUIC stays on
#: (WebTransport runs over it)
CHROMIUM_FLAGS = ("--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-default-apps",
                  "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                  "--autoplay-policy=no-user-gesture-required")


def chromium_flags(mic_wav: str | Path) -> list[str]:
    """Return Chromium's flags for a headless call whose microphone plays ``mic_wav``."""
    return [*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={mic_wav}"]


def write_fake_mic_wav(pcm: np.ndarray, rate: int, path: str | Path) -> float:
    """Write int16 mono ``pcm`` at ``rate`` as the 48 kHz 16-bit mono WAV Chromium's fake
    capture device reads (resampled with soxr); return its length in seconds."""
    import soxr

    x = np.asarray(pcm, dtype=np.int16)
    if rate != 48000:
        x = soxr.resample(x.astype(np.float32), rate, 48000).clip(-32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(x.astype("<i2").tobytes())
    return len(x) / 48000


def browser_call(url: str, pcm: np.ndarray, rate: int, *, workdir: str | Path, tail_s: float = 2.0,
                 screenshot: str | Path | None = None) -> dict[str, Any]:
    """Place one call from headless Chromium (module docstring); return its summary.

    Raises ImportError without Playwright, FileNotFoundError without Chromium, and
    ConnectionError if the page could not connect (its error / close code in the message)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(f"{CHROMIUM} not found (Debian package chromium)")
    mic = Path(workdir) / "fake-mic-48k.wav"
    # the fake device loops its file: the tail is silence in the file itself
    seconds = write_fake_mic_wav(np.concatenate([np.asarray(pcm, dtype=np.int16),
                                                 np.zeros(int(tail_s * rate), dtype=np.int16)]), rate, mic)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_flags(mic))
        try:
            page = browser.new_context(ignore_https_errors=True).new_page()
            page.goto(url + "&record=1")
            page.click("#call")
            state = _wait(page, lambda s: s["connected"] or s["error"] or s["closed"], 20.0)
            if not state["connected"]:
                raise ConnectionError(f"browser caller did not connect: {state['error'] or state['closed']}")
            # the microphone opens once the session is ready: the file plays from then on
            state = _wait(page, lambda s: s["closed"] is not None, seconds + 0.3)
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
            if state["closed"] is None:
                page.click("#hangup")
                _wait(page, lambda s: s["closed"] is not None, 5.0)
            times = page.evaluate("() => window.clutchcallTimes")
            heard = np.frombuffer(base64.b64decode(page.evaluate("() => window.clutchcallCaptureB64()")), dtype="<i2")
        finally:
            browser.close()
    turns = caller_turn_latencies(heard, times["frames"], times["agent"])
    lat = [ms for ms in turns if ms is not None]
    page_lat = [t["mouthToEarMs"] for t in state["turns"] if t["mouthToEarMs"] is not None]
    codec, crate = (state["codec"] or "?/0").split("/")[:2]
    return {
        "call_id": urllib.parse.parse_qs(url.split("#", 1)[1])["call"][0], "transport": "webtransport (browser)",
        "codec": codec, "rate": int(crate), "frames_sent": state["framesSent"],
        "agent_frames_received": state["agentFrames"],
        "agent_played_s": round(state["playout"]["played"] / 48000, 2),
        "agent_played_rms": round(state["playout"]["rms"], 4), "clear_playouts": state["playout"]["clears"],
        "connect_ms": round(state["connectMs"] or 0.0, 2),
        "turns": [{"turn": i + 1, "mouth_to_ear_ms": None if ms is None else round(ms, 2)}
                  for i, ms in enumerate(turns)],
        "mouth_to_ear_ms_p50": round(statistics.median(lat), 2) if lat else None,
        "page_turns": [{"turn": t["turn"], "page_mouth_to_ear_ms": None if t["mouthToEarMs"] is None
                        else round(t["mouthToEarMs"], 2)} for t in state["turns"]],
        "page_mouth_to_ear_ms_p50": round(statistics.median(page_lat), 2) if page_lat else None,
        "out_wav": None,
    }


def caller_turn_latencies(heard48k: np.ndarray, frame_times: list[float], agent_times: list[float],
                          *, frame_ms: int = 20, turn_gap_ms: int = 300) -> list[float | None]:
    """Mouth-to-ear per turn by the Python caller's definition on what the page captured:
    ``heard48k`` (int16, 48 kHz, one 20 ms frame per entry of ``frame_times``, the page clock
    in ms when each was captured) is resampled to 16 kHz for webrtcvad; each turn end (last
    speech frame before ``turn_gap_ms`` of non-speech) -> the first ``agent_times`` entry at or
    after that frame's time. Returns one latency (ms) per turn, None where no agent audio
    followed."""
    import bisect

    import soxr

    from clutchcall.prod.caller.audio import speech_flags, turn_ends

    pcm16k = soxr.resample(heard48k.astype(np.float32), 48000, 16000).clip(-32768, 32767).astype("<i2")
    flags = speech_flags(pcm16k.tobytes(), 16000, frame_ms)[: len(frame_times)]
    agent = sorted(agent_times)
    out: list[float | None] = []
    for end in turn_ends(flags, frame_ms, turn_gap_ms):
        t = frame_times[end]
        i = bisect.bisect_left(agent, t)
        out.append(agent[i] - t if i < len(agent) else None)
    return out


def echo_web_edge(cfg: Any, handler: Any, *, page: bool) -> Any:
    """The loopback echo edge of ``clutchcall call --transport webtransport|browser`` and of
    ``bench callerleg``: the WebTransport ingress on ``cfg`` calling ``handler`` and, with
    ``page``, the page server on the same port (self-signed certificate in ``cfg.cert_dir``).
    Returns an object with ``start() -> port``, ``stop()``, ``authority`` and ``cert_path``."""
    from clutchcall.prod.ingress.quic import QuicIngress
    from clutchcall.prod.ingress.tls import cert_sha256, ensure_self_signed
    from clutchcall.prod.ingress.webtransport import WebTransportIngress
    from clutchcall.prod.web.server import WebCaller

    if not page:
        return WebTransportIngress(cfg, handler)
    cert, key = ensure_self_signed(cfg.cert_dir)
    auth = QuicIngress(cfg, handler).authority

    class _Edge:
        authority, cert_path = auth, str(cert)

        def __init__(self) -> None:
            self.web = WebCaller(host=cfg.host, port=0, cert=str(cert), key=str(key), cert_hash=cert_sha256(cert),
                                 ingress_factory=lambda sock: WebTransportIngress(cfg, handler, authority=auth,
                                                                                  sock=sock))

        async def start(self) -> int:
            return await self.web.start()

        async def stop(self) -> None:
            await self.web.ingress.stop()  # type: ignore[attr-defined]
            await self.web.stop()

    return _Edge()


def _wait(page: Any, pred: Any, timeout_s: float) -> dict[str, Any]:
    end = time.monotonic() + max(0.0, timeout_s)
    state: dict[str, Any] = page.evaluate("() => JSON.parse(JSON.stringify(window.clutchcall))")
    while not pred(state) and time.monotonic() < end:
        time.sleep(0.2)
        state = page.evaluate("() => JSON.parse(JSON.stringify(window.clutchcall))")
    return state
