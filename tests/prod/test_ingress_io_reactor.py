"""The QUIC ingress over the native datagram I/O: real MoQT calls (the caller library, the echo
handler, aioquic both sides, real TLS) over loopback on the io_uring reactor and on asyncio,
and the "auto" fallback when io_uring cannot be used."""

from __future__ import annotations

import asyncio
import errno
import logging
import time

import pytest

from clutchcall.engine.errors import ConfigError
from clutchcall.native import udpio
from clutchcall.prod.caller.client import Caller
from clutchcall.prod.caller.quic_transport import QuicCallerTransport
from clutchcall.prod.caller.speech import dialogue
from clutchcall.prod.ingress.call import EchoHandler
from clutchcall.prod.ingress.config import IngressConfig
from clutchcall.prod.ingress.quic import QuicIngress

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("each_quic_core")]

needs_uring = pytest.mark.skipif(not udpio.URING_BUILT, reason="io_uring reactor not built")


@pytest.fixture(scope="module")
def speech() -> bytes:
    return dialogue(["hello there"], rate=16000, gap_s=0.3)


async def _call(edge: QuicIngress, call_id: str, pcm: bytes) -> object:
    token = edge.authority.issue(call_id, time.time() + 60)
    tr = QuicCallerTransport("127.0.0.1", edge.port, token=token, call_id=call_id, codec="pcm16",
                             rate=16000, cafile=edge.cert_path)
    caller = Caller(tr, call_id=call_id, codec="pcm16", rate=16000, tail_s=0.3, keep_payloads=True)
    return await caller.run(pcm)


def _check_echo(res: object, pcm: bytes) -> None:
    n = len(pcm) // 640
    assert res.frames_sent == n  # type: ignore[attr-defined]
    assert res.agent_frames_received == n  # type: ignore[attr-defined]
    assert b"".join(res.received_payloads) == pcm[: n * 640]  # type: ignore[attr-defined]


@pytest.mark.parametrize("io", [pytest.param("uring", marks=needs_uring), "asyncio"])
def test_moqt_call_both_ways_over_io(tmp_path, speech, io) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        edge = QuicIngress(IngressConfig(cert_dir=str(tmp_path / "tls"), io=io), EchoHandler())
        await edge.start()
        try:
            assert edge.io_kind == io
            results = await asyncio.gather(*(_call(edge, f"c{i}", speech) for i in range(2)))
            await asyncio.sleep(0.1)
            transport_io = edge._server._transport.io  # type: ignore[union-attr]
            assert transport_io.kind == io
            if io == "uring":
                st = transport_io.stats()
                # the calls' datagrams really went through the reactor, both ways
                assert st["rx_pkts"] > 2 * len(speech) // 640 and st["tx_pkts"] > 2 * len(speech) // 640
                assert st["tx_errors"] == 0 and st["rx_errors"] == 0
        finally:
            await edge.stop()
        for res in results:
            _check_echo(res, speech)
        assert edge.stats["calls_started"] == 2 and edge.stats["calls_ended"] == 2

    asyncio.run(asyncio.wait_for(main(), 45))


def _fallback_records(caplog) -> list[logging.LogRecord]:  # type: ignore[no-untyped-def]
    return [r for r in caplog.records if r.name.startswith("clutchcall") and r.levelno >= logging.WARNING]


def test_auto_falls_back_with_one_log_line_when_uring_disabled(tmp_path, speech, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CLUTCHCALL_NO_URING", "1")

    async def main() -> None:
        edge = QuicIngress(IngressConfig(cert_dir=str(tmp_path / "tls"), io="auto"), EchoHandler())
        with caplog.at_level(logging.INFO):
            await edge.start()
        try:
            assert edge.io_kind == "asyncio"
            _check_echo(await _call(edge, "fb", speech), speech)
        finally:
            await edge.stop()

    asyncio.run(asyncio.wait_for(main(), 45))
    recs = _fallback_records(caplog)
    assert len(recs) == 1, [r.getMessage() for r in recs]
    assert "io_uring unavailable" in recs[0].getMessage() and "CLUTCHCALL_NO_URING" in recs[0].getMessage()


def test_auto_falls_back_when_the_kernel_refuses(tmp_path, speech, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """The reactor's constructor failing as on a kernel without io_uring (ENOSYS)."""

    def refuse(*a, **k):  # type: ignore[no-untyped-def]
        raise udpio.UringUnavailable("io_uring setup failed: ENOSYS", errno.ENOSYS)

    monkeypatch.delenv("CLUTCHCALL_NO_URING", raising=False)
    monkeypatch.setattr(udpio.UringUdpIO, "__init__", refuse)

    async def main() -> None:
        edge = QuicIngress(IngressConfig(cert_dir=str(tmp_path / "tls")), EchoHandler())  # io="auto"
        with caplog.at_level(logging.INFO):
            await edge.start()
        try:
            assert edge.io_kind == "asyncio"
            _check_echo(await _call(edge, "fb2", speech), speech)
        finally:
            await edge.stop()

    asyncio.run(asyncio.wait_for(main(), 45))
    recs = _fallback_records(caplog)
    assert len(recs) == 1 and "ENOSYS" in recs[0].getMessage()


def test_explicit_uring_that_cannot_work_falls_back_with_one_line(tmp_path, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CLUTCHCALL_NO_URING", "1")
    caplog.set_level("WARNING", logger="clutchcall.ingress.io")

    async def main() -> None:
        edge = QuicIngress(IngressConfig(cert_dir=str(tmp_path / "tls"), io="uring"), EchoHandler())
        await edge.start()
        try:
            assert edge.io_kind == "asyncio"
        finally:
            await edge.stop()

    asyncio.run(asyncio.wait_for(main(), 20))
    recs = _fallback_records(caplog)
    assert len(recs) == 1 and "io=uring requested" in recs[0].getMessage()


def test_io_setting_is_validated() -> None:
    with pytest.raises(ConfigError):
        IngressConfig(io="xdp-please")
    assert IngressConfig().io == "auto"


@needs_uring
def test_reactor_hands_the_loop_bounded_chunks_with_tasks_in_between(monkeypatch) -> None:
    """A burst larger than the chunk arrives whole, in chunks of at most RX_CHUNK, and a task
    woken by the first chunk runs before the last chunk is delivered."""
    import socket

    from clutchcall.prod.ingress import dataplane

    monkeypatch.delenv("CLUTCHCALL_NO_URING", raising=False)

    async def main() -> None:
        io = dataplane.open_ingress_io("uring", "127.0.0.1", 0)
        assert io.kind == "uring"
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sizes: list[int] = []
        order: list[str] = []
        got = asyncio.Event()
        total = 5 * dataplane.RX_CHUNK + 3

        def on_batch(batch: list) -> None:  # type: ignore[type-arg]
            if not sizes:
                asyncio.get_running_loop().call_soon(order.append, "task")
            sizes.append(len(batch))
            order.append("chunk")
            if sum(sizes) >= total:
                got.set()

        try:
            for i in range(total):  # all queued in the ring before the loop looks
                tx.sendto(b"x%d" % i, io.local_address)
            await asyncio.sleep(0.05)
            await io.start(on_batch)
            await asyncio.wait_for(got.wait(), 5)
        finally:
            tx.close()
            io.close()
        assert sum(sizes) == total and max(sizes) <= dataplane.RX_CHUNK and len(sizes) >= 6
        assert order.index("task") < len(order) - 1  # ran between chunks, not after the drain

    asyncio.run(main())
