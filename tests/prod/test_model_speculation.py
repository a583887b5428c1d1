"""Speculative commit on the model leg, over real loopback WebSockets to the embedded model, in
both dialects; every event added for it is validated against the official ``openai`` SDK's
pydantic event types; and the embedded model's lognormal time to first audio."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

from clutchcall.engine.errors import ConfigError
from clutchcall.prod.model import (
    AudioChunk,
    ModelLeg,
    ModelLegConfig,
    ModelServerConfig,
    ReferenceModelServer,
)

openai_types = pytest.importorskip("openai.types.realtime")
from openai.types.beta.realtime import RealtimeClientEvent as BetaClientEvent  # noqa: E402
from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent  # noqa: E402
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent  # noqa: E402
from pydantic import TypeAdapter  # noqa: E402

CLIENT = {"ga": TypeAdapter(RealtimeClientEvent), "beta": TypeAdapter(BetaClientEvent)}
SERVER = {"ga": TypeAdapter(RealtimeServerEvent), "beta": TypeAdapter(BetaServerEvent)}
CHECKED = {"input_audio_buffer.commit", "response.create", "response.cancel",
           "conversation.item.delete", "conversation.item.deleted", "response.done"}


def tone(ms: int, hz: float = 220.0, amp: int = 8000) -> bytes:
    t = np.arange(ms * 24) / 24000
    return (amp * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


class Collector:
    """The leg's callbacks, kept."""

    def __init__(self) -> None:
        self.chunks: list[AudioChunk] = []
        self.done: list[tuple[str, str]] = []
        self.errors: list[Exception] = []

    def leg(self, url: str, **cfg: Any) -> ModelLeg:
        return ModelLeg(ModelLegConfig(url=url, **cfg), on_audio=self.chunks.append,
                        on_response_done=lambda rid, st: self.done.append((rid, st)),
                        on_error=self.errors.append)


def run(coro: Any, timeout: float = 30.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def tap(leg: ModelLeg) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Record every client event the leg writes and every server event it reads."""
    sent: list[dict[str, Any]] = []
    got: list[dict[str, Any]] = []
    ws = leg._ws
    assert ws is not None
    send = ws.send

    async def send_and_keep(msg: Any) -> None:
        sent.append(json.loads(msg))
        await send(msg)

    ws.send = send_and_keep  # type: ignore[method-assign]
    handle = leg._handle

    def handle_and_keep(ev: dict[str, Any]) -> None:
        got.append(ev)
        handle(ev)

    leg._handle = handle_and_keep  # type: ignore[method-assign]
    return sent, got


async def until(cond: Any, timeout: float = 5.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < end, "timed out"
        await asyncio.sleep(0.005)


def validate(dialect: str, sent: list[dict[str, Any]], got: list[dict[str, Any]]) -> set[str]:
    """Parse the speculation events with the SDK's pydantic types; return the types checked."""
    seen = set()
    for ev in sent:
        if ev["type"] in CHECKED:
            CLIENT[dialect].validate_python(ev)
            seen.add(ev["type"])
    for ev in got:
        if ev["type"] in CHECKED and dialect == "ga":
            SERVER["ga"].validate_python(ev)  # the embedded model speaks the GA shapes
            seen.add(ev["type"])
    return seen


@pytest.mark.parametrize("dialect", ["ga", "beta"])
def test_retract_after_audio_cancels_and_deletes_the_unplayed_item(dialect: str) -> None:
    async def main() -> None:
        cfg = ModelServerConfig(time_to_first_audio_ms=50, replies=("One moment please.",))
        async with ReferenceModelServer(cfg) as srv:
            col = Collector()
            leg = col.leg(srv.url, dialect=dialect)
            await leg.connect()
            sent, got = tap(leg)
            leg.append(tone(400))
            leg.speculate()
            await until(lambda: col.chunks)  # the reply's audio has started to come
            rid = leg.speculative_response_id
            assert rid is not None and col.chunks[0].response_id == rid
            item = col.chunks[0].item_id
            leg.retract()
            await until(lambda: srv.stats.deletions == [item])
            await until(lambda: any(e["type"] == "conversation.item.deleted" for e in got))
            kinds = [e["type"] for e in sent]
            assert kinds[kinds.index("response.create") + 1:] == ["response.cancel",
                                                                  "conversation.item.delete"]
            assert srv.stats.cancelled == 1 and leg.stats.retractions == 1 and leg.stats.deletes == 1
            assert col.done == []  # nobody waits for a retracted reply
            n = len(col.chunks)
            await asyncio.sleep(0.1)
            assert len(col.chunks) == n  # no audio of it after the retraction
            # the turn goes on and is committed again: a normal reply
            leg.append(tone(300))
            leg.commit()
            await until(lambda: col.done)
            assert col.done[0][1] == "completed" and col.done[0][0] != rid
            assert not col.errors, col.errors
            seen = validate(dialect, sent, got)
            assert {"response.cancel", "conversation.item.delete"} <= seen
            await leg.close()

    run(main())


@pytest.mark.parametrize("dialect", ["ga", "beta"])
def test_retract_before_the_response_is_named_cancels_it_when_it_is(dialect: str) -> None:
    async def main() -> None:
        async with ReferenceModelServer(ModelServerConfig(time_to_first_audio_ms=300)) as srv:
            col = Collector()
            leg = col.leg(srv.url, dialect=dialect)
            await leg.connect()
            sent, got = tap(leg)
            leg.append(tone(400))
            leg.speculate()
            leg.retract()  # response.created has not come back yet
            await until(lambda: srv.stats.cancelled == 1)
            await asyncio.sleep(0.4)  # past the would-be first audio
            assert col.chunks == [] and col.done == []
            assert srv.stats.deletions == []  # cancelled before any item existed
            assert [e["type"] for e in sent][-1] == "response.cancel"
            assert not col.errors, col.errors
            validate(dialect, sent, got)
            await leg.close()

    run(main())


def test_release_lets_the_reply_through_and_keeps_it() -> None:
    async def main() -> None:
        async with ReferenceModelServer(ModelServerConfig(time_to_first_audio_ms=50)) as srv:
            col = Collector()
            leg = col.leg(srv.url)
            await leg.connect()
            sent, got = tap(leg)
            leg.append(tone(400))
            leg.speculate()
            await until(lambda: leg.speculative_response_id is not None)
            assert leg.speculating
            await until(lambda: col.chunks)
            # every chunk names the speculative response: the shell marks them speculative
            # and the call core holds them (tests/engine/call/test_speculation.py)
            assert {c.response_id for c in col.chunks} == {leg.speculative_response_id}
            leg.release()
            assert not leg.speculating and leg.speculative_response_id is None
            await until(lambda: col.done)
            assert col.done[0][1] == "completed" and srv.stats.deletions == []
            assert "response.cancel" not in [e["type"] for e in sent]
            validate("ga", sent, got)
            await leg.close()

    run(main())


def test_item_delete_errors_are_typed_and_the_session_survives() -> None:
    async def main() -> None:
        async with ReferenceModelServer(ModelServerConfig(time_to_first_audio_ms=30)) as srv:
            col = Collector()
            leg = col.leg(srv.url)
            await leg.connect()
            leg._send({"type": "conversation.item.delete", "item_id": "no_such_item"})
            await until(lambda: col.errors)
            assert getattr(col.errors[0], "code", None) == "invalid_value"
            leg.append(tone(300))
            leg.commit()
            await until(lambda: col.done)
            assert col.done[0][1] == "completed"
            await leg.close()

    run(main())


def test_ttfa_is_lognormal_seeded_and_deterministic() -> None:
    async def draws(seed: int, sigma: float) -> list[float]:
        srv = ReferenceModelServer(ModelServerConfig(time_to_first_audio_ms=300, ttfa_sigma=sigma,
                                                     ttfa_seed=seed))
        from clutchcall.prod.model.server import _Session

        s = _Session(srv, None, 1)  # type: ignore[arg-type]
        return [s.draw_ttfa_s() for _ in range(2000)]

    a, b = run(draws(1, 0.35)), run(draws(1, 0.35))
    assert a == b and run(draws(2, 0.35)) != a
    x = np.log(np.asarray(a))
    assert abs(np.exp(np.median(x)) - 0.3) < 0.02 and abs(np.std(x) - 0.35) < 0.03
    assert set(run(draws(1, 0.0))) == {0.3}
    for bad in ({"ttfa_sigma": -0.1}, {"ttfa_sigma": float("nan")}, {"ttfa_seed": -1}):
        with pytest.raises(ConfigError):
            ModelServerConfig(**bad)  # type: ignore[arg-type]


def test_a_speculative_request_retried_after_a_timeout_stays_speculative() -> None:
    """The first-audio time-out asks again once: the retry is the speculative request (its
    audio is held like the first one's would have been), and a retraction stops its wait
    (no further retry)."""

    async def main() -> None:
        async with ReferenceModelServer(ModelServerConfig(time_to_first_audio_ms=900)) as srv:
            col = Collector()
            leg = col.leg(srv.url, first_audio_timeout_s=0.3)
            await leg.connect()
            leg.append(tone(300))
            leg.speculate()
            await until(lambda: leg.speculative_response_id is not None)
            first = leg.speculative_response_id
            await until(lambda: leg.speculative_response_id not in (None, first))
            assert leg.speculating and leg.stats.responses_requested == 2
            leg.retract()
            await until(lambda: srv.stats.cancelled == 2)
            await asyncio.sleep(0.5)  # past another time-out: nothing is asked again
            assert leg.stats.responses_requested == 2 and srv.stats.responses == 2
            assert col.chunks == [] and not leg.speculating
            await leg.close()

    run(main())
