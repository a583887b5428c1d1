"""The one call generator: the engine's scripted inputs are its ``style="scripted"`` stream."""

from __future__ import annotations

import hashlib

import pytest

from clutchcall.engine.call.inputs import AGENT_FINISHED, AGENT_STARTED
from clutchcall.engine.errors import ConfigError
from clutchcall.sim.calls import synthetic_call
from clutchcall.tools.scenario import call_inputs, scripted_call


def _digest(inputs: list) -> str:
    rows = [(i.kind, repr(i.time), i.speech, i.duration_ms) for i in inputs]
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def test_scripted_stream_is_pinned() -> None:
    # the stream `bench engine`, `engine demo` and the replay tests were measured on: a change
    # here changes recorded results, so it must be deliberate (a new style, not an edit);
    # the digest was taken from the generator before it moved into sim/calls.py
    assert _digest(scripted_call(seed=7, seconds=60)) == (
        "9f3cc26ec520ddee859406b643760ccc4d6c831c8a83c1f3c98d61ebb618406f")


def test_scripted_call_is_the_scripted_synthetic_call() -> None:
    call = synthetic_call(3, 30, 10, style="scripted")
    assert call.segments == () and call == synthetic_call(3, 30, 10, style="scripted")
    inputs = scripted_call(3, 30, 10)
    assert inputs == call_inputs(call)
    frames = [i for i in inputs if i.kind == "caller_frame"]
    assert [f.speech for f in frames] == list(call.speech)
    starts = [i.time for i in inputs if i.kind == AGENT_STARTED]
    ends = [i.time for i in inputs if i.kind == AGENT_FINISHED]
    inside = [(a, b) for a, b in call.agent_speech if b <= len(call.speech) * 10]
    assert starts[: len(inside)] == [round(a / 1000, 6) for a, _ in inside]
    assert ends[: len(inside)] == [round(b / 1000, 6) for _, b in inside]


def test_labelled_call_drives_the_engine_too() -> None:
    call = synthetic_call(4, 40)
    inputs = call_inputs(call)
    assert sum(i.kind == "caller_frame" for i in inputs) == len(call.speech)
    assert sum(i.kind == AGENT_STARTED for i in inputs) == len(call.agent_speech)


def test_unknown_style_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        synthetic_call(1, 10, style="reactive")
