"""Issue 19 item 8: every server event the embedded model sends, and every client event the
model leg sends, parses with the official ``openai`` SDK's own pydantic types, in both
dialects (GA: ``openai.types.realtime``; beta: ``openai.types.beta.realtime``).

A recording WebSocket relay sits between the real model leg and the real embedded model and
keeps every message both ways; a raw client adds the error paths the leg never triggers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from clutchcall.prod.caller.speech import synth
from clutchcall.prod.model.client import ModelLeg, ModelLegConfig
from clutchcall.prod.model.protocol import b64encode
from clutchcall.prod.model.server import ModelServerConfig, ReferenceModelServer

openai_types = pytest.importorskip("openai.types.realtime")
pydantic = pytest.importorskip("pydantic")

pytestmark = pytest.mark.timeout(60)


def _by_type(union: Any) -> dict[str, Any]:
    """Map each event ``type`` literal of an SDK event union to its pydantic model."""
    import typing

    members = typing.get_args(union)
    if members and typing.get_origin(members[0]) is typing.Union:  # Annotated[Union[...], ...]
        members = typing.get_args(members[0])
    out = {}
    for model in members:
        for lit in typing.get_args(model.model_fields["type"].annotation):
            out[lit] = model
    return out


def adapters(dialect: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The SDK's (server event, client event) models by event type, of ``dialect``."""
    if dialect == "ga":
        from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
    else:
        from openai.types.beta.realtime import RealtimeClientEvent, RealtimeServerEvent
    return _by_type(RealtimeServerEvent), _by_type(RealtimeClientEvent)


def check(models: dict[str, Any], ev: dict[str, Any], what: str) -> None:
    """Validate ``ev`` with the SDK model of its type; AssertionError naming what failed."""
    model = models.get(ev["type"])
    assert model is not None, f"{what} event type {ev['type']!r} is not in the SDK"
    try:
        model.model_validate(ev)
    except pydantic.ValidationError as exc:
        raise AssertionError(f"{what} event {ev['type']} fails the SDK: {exc}\n{ev}") from None


class Relay:
    """A WebSocket relay (real sockets both sides) that records every text message."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.from_server: list[dict[str, Any]] = []
        self.from_client: list[dict[str, Any]] = []

    async def handler(self, ws: ServerConnection) -> None:
        headers = {k: v for k, v in ws.request.headers.items() if k.lower() == "openai-beta"} \
            if ws.request is not None else {}
        async with connect(self.upstream, additional_headers=headers, max_size=16 << 20) as up:
            async def down() -> None:
                async for m in up:
                    self.from_server.append(json.loads(m))
                    await ws.send(m)

            task = asyncio.create_task(down())
            try:
                async for m in ws:
                    self.from_client.append(json.loads(m))
                    await up.send(m)
            finally:
                task.cancel()


async def _session(dialect: str) -> Relay:
    async with ReferenceModelServer(ModelServerConfig(time_to_first_audio_ms=50, replies=("Okay.",))) as model:
        relay = Relay(model.url)
        async with serve(relay.handler, "127.0.0.1", 0, max_size=16 << 20) as server:
            url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/realtime"
            first_audio = asyncio.Event()
            done: list[str] = []
            leg = ModelLeg(ModelLegConfig(url=url, dialect=dialect, append_batch_ms=100),
                           on_audio=lambda c: first_audio.set(),
                           on_response_done=lambda rid, st: done.append(st))
            await leg.connect()
            speech = synth("Where is my parcel?", 24000)
            leg.append(speech[: len(speech) // 2])
            leg.prime()
            leg.append(speech[len(speech) // 2:])
            leg.commit()
            await asyncio.wait_for(first_audio.wait(), 10)
            await asyncio.sleep(0.3)
            leg.cancel(played_ms=200)  # response.cancel + conversation.item.truncate
            leg.append(bytes(4800))
            leg.backchannel_filtered()  # input_audio_buffer.clear
            leg.append(speech)
            leg.commit()  # a full reply this time
            for _ in range(400):
                if "completed" in done:
                    break
                await asyncio.sleep(0.05)
            await leg.flushed()
            # error paths the leg avoids: a raw client of the same dialect
            extra = {"OpenAI-Beta": "realtime=v1"} if dialect == "beta" else {}
            async with connect(url, additional_headers=extra) as raw:
                await raw.send(json.dumps({"type": "input_audio_buffer.commit"}))  # too little audio
                await raw.send(json.dumps({"type": "response.cancel"}))  # none active
                await raw.send(json.dumps({"type": "input_audio_buffer.append", "audio": b64encode(bytes(9600))}))
                await raw.send(json.dumps({"type": "input_audio_buffer.commit"}))
                await raw.send(json.dumps({"type": "response.create"}))
                await raw.send(json.dumps({"type": "response.create"}))  # already active
                await asyncio.sleep(1.0)
            await leg.close()
            await asyncio.sleep(0.1)
    return relay


@pytest.mark.parametrize("dialect", ["ga", "beta"])
def test_every_event_both_ways_parses_with_the_openai_sdk(dialect: str) -> None:
    relay = asyncio.run(asyncio.wait_for(_session(dialect), 50))
    server_models, client_models = adapters(dialect)
    for ev in relay.from_server:
        check(server_models, ev, f"{dialect} server")
    for ev in relay.from_client:
        check(client_models, ev, f"{dialect} client")
    seen_server = {ev["type"] for ev in relay.from_server}
    audio = "response.output_audio" if dialect == "ga" else "response.audio"
    want_server = {"session.created", "session.updated", "input_audio_buffer.committed",
                   "input_audio_buffer.cleared", "response.created", "response.output_item.added",
                   "response.content_part.added", f"{audio}.delta", f"{audio}.done",
                   "response.content_part.done", "response.output_item.done", "response.done",
                   "conversation.item.truncated", "error"}
    assert want_server <= seen_server, want_server - seen_server
    other = "response.audio.delta" if dialect == "ga" else "response.output_audio.delta"
    assert other not in seen_server  # each dialect gets its own event names
    want_client = {"session.update", "input_audio_buffer.append", "input_audio_buffer.commit",
                   "input_audio_buffer.clear", "response.create", "response.cancel",
                   "conversation.item.truncate"}
    assert want_client <= {e["type"] for e in relay.from_client}
