"""``clutchcall serve --ready-json``: starts, prints its ready line, serves /metrics and a real
WebSocket call, and stops cleanly (exit 0, a ``stopped`` line) on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

import pytest

from clutchcall.prod.caller.client import Caller
from clutchcall.prod.caller.speech import synth
from clutchcall.prod.caller.ws_transport import WsCallerTransport

pytestmark = pytest.mark.timeout(60)


def test_serve_ready_json_call_and_sigterm(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "edge.toml").write_text('[edge]\ncaller_idle_timeout_s = 5.0\n[turn]\nend_of_turn_silence_ms = 400\n'
                                        '[model]\ntime_to_first_audio_ms = 100\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "clutchcall.cli", "serve", "--config", "edge.toml", "--quic-port", "0",
         "--ws-port", "0", "--metrics-port", "0", "--ready-json", "--trace-dir", "tr", "--tokens", "2"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["ready"] is True and ready["quic_port"] > 0 and ready["ws_port"] > 0
        assert ready["embedded_model"] is True and set(ready["tokens"]) == {"call-0-0", "call-0-1"}

        async def main() -> tuple[object, bytes]:
            pcm = bytes(1600) + synth("Where is my parcel today?", 8000) + bytes(8000 * 2)
            tr = WsCallerTransport(f"wss://localhost:{ready['ws_port']}/media", token=ready["tokens"]["call-0-1"],
                                   call_id="call-0-1", cafile=ready["cert"])
            res = await Caller(tr, call_id="call-0-1", codec="g711_ulaw", rate=8000, tail_s=1.0).run(pcm)
            await asyncio.sleep(0.3)
            r, w = await asyncio.open_connection("127.0.0.1", ready["metrics_port"])
            w.write(b"GET /metrics HTTP/1.1\r\n\r\n")
            body = await r.read()
            w.close()
            return res, body

        res, body = asyncio.run(main())
        assert res.agent_frames_received > 0 and res.turns  # type: ignore[attr-defined]
        assert b"clutchcall_turn_latency_seconds_count 1.0" in body
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err[-2000:]
        last = json.loads(rest.strip().splitlines()[-1])
        assert last["stopped"] is True and last["ws"]["calls_started"] == 1
        assert (tmp_path / "tr" / "call-0-1.parquet").is_file()
        # logs are JSON lines carrying the call id
        logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        assert any(rec.get("call_id") == "call-0-1" for rec in logs)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_shards_io_uring_calls_land_and_stop(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``serve --shards 2 --io uring``: one QUIC port and one WebSocket port for two edge
    processes; real calls over both transports are answered (with a 1 ms call-loop slack);
    SIGTERM stops every shard."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "clutchcall.cli", "serve", "--quic-port", "0", "--ws-port", "0",
         "--metrics-port", "0", "--ready-json", "--no-trace", "--tokens", "6", "--shards", "2",
         "--io", "uring", "--ttfa-ms", "100", "--call-loop-slack-ms", "1"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["shards"] == 2 and len(set(ready["pids"])) == 2 and len(ready["metrics_ports"]) == 2
        from clutchcall.native.udpio import URING_BUILT

        assert ready["io"] == ("uring" if URING_BUILT else "asyncio")

        async def main() -> list[object]:
            from clutchcall.prod.caller.quic_transport import QuicCallerTransport

            pcm16 = bytes(3200) + synth("Is the store open?", 16000) + bytes(16000 * 2)
            pcm8 = bytes(1600) + synth("Is the store open?", 8000) + bytes(8000 * 2)
            jobs = []
            for i in range(6):
                cid = f"call-0-{i}"
                if i < 5:
                    tr: object = QuicCallerTransport("127.0.0.1", ready["quic_port"], token=ready["tokens"][cid],
                                                     call_id=cid, codec="pcm16", rate=16000, cafile=ready["cert"])
                    jobs.append(Caller(tr, call_id=cid, codec="pcm16", rate=16000, tail_s=1.0).run(pcm16))  # type: ignore[arg-type]
                else:
                    tr = WsCallerTransport(f"wss://localhost:{ready['ws_port']}/media", token=ready["tokens"][cid],
                                           call_id=cid, cafile=ready["cert"])
                    jobs.append(Caller(tr, call_id=cid, codec="g711_ulaw", rate=8000, tail_s=1.0).run(pcm8))  # type: ignore[arg-type]
            return list(await asyncio.gather(*jobs))

        results = asyncio.run(main())
        for res in results:
            assert res.agent_frames_received > 0 and res.turns, res  # type: ignore[attr-defined]
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err[-2000:]
        last = json.loads(rest.strip().splitlines()[-1])
        assert last["stopped"] is True and len(last["shards"]) == 2
        assert sum(s["quic"].get("calls_started", 0) for s in last["shards"]) == 5
        assert sum(s["ws"].get("calls_started", 0) for s in last["shards"]) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
