"""Issue 19 items 2 and 3: no public default auth key; one live call per call id (across both
ingresses); one trace file per call instance, never overwritten."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import subprocess
import sys
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from clutchcall.engine.errors import ConfigError
from clutchcall.prod.caller.quic_transport import QuicCallerTransport
from clutchcall.prod.edge import Edge, EdgeConfig, EmbeddedModelConfig
from clutchcall.prod.ingress.auth import (
    AuthError,
    TokenAuthority,
    is_loopback_host,
    process_key,
    resolve_auth_key,
)
from clutchcall.prod.ingress.config import IngressConfig

pytestmark = pytest.mark.timeout(60)

OLD_PUBLIC_KEY = b"clutchcall-dev-key-change-me!"  # the key the source used to carry


def test_resolve_auth_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLUTCHCALL_AUTH_KEY", raising=False)
    assert resolve_auth_key("127.0.0.1") == process_key() == resolve_auth_key("::1")
    assert resolve_auth_key("localhost") == process_key() and len(process_key()) >= 32
    for host in ("0.0.0.0", "::", "198.18.0.1", "edge.example.com"):
        assert not is_loopback_host(host)
        with pytest.raises(ConfigError, match="CLUTCHCALL_AUTH_KEY"):
            resolve_auth_key(host)
    assert resolve_auth_key("0.0.0.0", "k" * 16) == b"k" * 16
    monkeypatch.setenv("CLUTCHCALL_AUTH_KEY", "e" * 20)
    assert resolve_auth_key("0.0.0.0") == b"e" * 20 == resolve_auth_key("127.0.0.1")
    monkeypatch.setenv("CLUTCHCALL_AUTH_KEY", "short")
    with pytest.raises(ConfigError, match="16 bytes"):
        resolve_auth_key("127.0.0.1")


def test_default_key_is_not_in_the_source() -> None:
    """A token minted by a default-configured ingress is refused under the old public key."""
    key = IngressConfig().auth_key
    assert key != OLD_PUBLIC_KEY and key == process_key()
    tok = TokenAuthority(key).issue("c1", time.time() + 60)
    with pytest.raises(AuthError, match="forged"):
        TokenAuthority(OLD_PUBLIC_KEY).verify(tok, time.time())


def test_serve_public_address_without_key_exits_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in __import__("os").environ.items() if k != "CLUTCHCALL_AUTH_KEY"}
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "clutchcall.cli", "serve", "--host", "0.0.0.0", "--quic-port", "0",
         "--ws-port", "0", "--metrics-port", "-1", "--no-trace", "--ready-json", "--seconds", "3"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30, env=env, check=False)
    assert res.returncode == 2, (res.stdout, res.stderr[-500:])
    assert res.stdout == ""  # never got to listen
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "CLUTCHCALL_AUTH_KEY" in lines[0] and "0.0.0.0" in lines[0], lines
    assert time.monotonic() - t0 < 15


def _start_msg(token: str) -> str:
    return json.dumps({"event": "start", "streamSid": "MZ1", "start": {
        "customParameters": {"token": token},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})


def _media_msg(chunk: int) -> str:
    return json.dumps({"event": "media", "media": {"chunk": str(chunk), "timestamp": str(20 * (chunk - 1)),
                                                    "payload": base64.b64encode(b"\xff" * 160).decode()}})


async def _short_ws_call(uri: str, cafile: str, token: str, frames: int = 10) -> None:
    async with connect(uri, ssl=ssl.create_default_context(cafile=cafile)) as ws:
        await ws.send(_start_msg(token))
        for i in range(1, frames + 1):
            await ws.send(_media_msg(i))
        await ws.send(json.dumps({"event": "stop"}))
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        except ConnectionClosed:
            pass


def test_one_live_call_per_id_and_one_trace_per_instance(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = EdgeConfig(trace_dir=str(tmp_path / "traces"), cert_dir=str(tmp_path / "tls"), json_logs=False,
                     metrics_port=-1, model=EmbeddedModelConfig(time_to_first_audio_ms=100))

    async def main() -> None:
        async with Edge(cfg) as edge:
            uri = f"wss://localhost:{edge.ws_port}/media"
            token = edge.issue_token("dup")
            ctx = ssl.create_default_context(cafile=edge.cert_path)
            async with connect(uri, ssl=ctx) as first:
                await first.send(_start_msg(token))
                await first.send(_media_msg(1))
                for _ in range(100):  # wait until the first call is running
                    if "dup" in edge.handler.pipelines:
                        break
                    await asyncio.sleep(0.02)
                # the same token again over WebSocket: refused while the first call runs
                async with connect(uri, ssl=ctx) as second:
                    await second.send(_start_msg(token))
                    with pytest.raises(ConnectionClosed):
                        await asyncio.wait_for(second.recv(), 5)
                    assert second.close_code == 1008 and "already connected" in (second.close_reason or "")
                # ... and over QUIC (the two ingresses share one authority)
                tr = QuicCallerTransport("127.0.0.1", edge.quic_port, token=token, call_id="dup",
                                         codec="pcm16", rate=16000, cafile=edge.cert_path, timeout_s=3.0)
                with pytest.raises(Exception):  # noqa: B017 -- the session is closed by the edge
                    await tr.connect()
                    await asyncio.sleep(1.0)
                    assert tr.proto.error is not None
                    raise tr.proto.error
                await tr.hangup()
                await first.send(json.dumps({"event": "stop"}))
            assert edge.quic.stats["refused_in_use"] == 1 and edge.ws.stats["auth_in_use"] == 1
            # after the first call ended the token may place a new call; each instance keeps its trace
            for _ in range(100):
                if "dup" not in edge.quic.authority.live:
                    break
                await asyncio.sleep(0.05)
            await _short_ws_call(uri, edge.cert_path, token)
            for _ in range(200):
                if len(list((tmp_path / "traces").glob("dup*.parquet"))) == 2 and "dup" not in edge.handler.pipelines:
                    break
                await asyncio.sleep(0.05)

    asyncio.run(asyncio.wait_for(main(), 45))
    names = sorted(p.name for p in (tmp_path / "traces").glob("dup*.parquet"))
    assert names == ["dup.2.parquet", "dup.parquet"], names
    from clutchcall.traces.recorded import read_trace

    for n in names:  # both complete, valid traces
        assert read_trace(tmp_path / "traces" / n).header.call_id == "dup"
