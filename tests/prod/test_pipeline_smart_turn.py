"""The opt-in smart-turn rule through the production pipeline on loopback: real espeak-ng
caller speech at 1x, the edge keeping the last 8 s of the call (``LiveProbe``), the embedded
model. Exactly the frame 200 ms into each pause carries the model's probability, the pause's
end of turn follows it, and the recorded inputs replay to the same outputs without the audio."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clutchcall.engine import Commit, TurnConfig
from clutchcall.engine.audio.smart_turn import CHECK_MS, check_frames
from clutchcall.engine.call import replay as replay_outputs
from clutchcall.engine.endpoint import SmartTurnRule
from clutchcall.prod.model import ModelServerConfig, ReferenceModelServer
from clutchcall.prod.model.speech import render_speech_sync
from clutchcall.prod.pipeline import CallPipeline, MemoryDownlink, PipelineConfig

from .test_pipeline_speculation import RATE, play, run, silence

pytestmark = pytest.mark.timeout(90)


def test_each_pause_is_analysed_once_and_decides_the_end_of_turn() -> None:
    pytest.importorskip("onnxruntime")
    from clutchcall.traces import smart_turn_model

    try:
        smart_turn_model.fetch_model(download=False)  # the installed wheel's copy, pinned
    except Exception as exc:  # noqa: BLE001 - no model here: nothing to run
        pytest.skip(f"smart-turn model unavailable: {exc}")
    words = np.frombuffer(render_speech_sync("I would like to order a large pizza", RATE), dtype="<i2")
    caller = np.concatenate([silence(300), words, silence(1500)])
    cfg = TurnConfig(end_of_turn_rule="smart-turn")

    async def main() -> None:
        mcfg = ModelServerConfig(replies=("Sure.",), time_to_first_audio_ms=40, delta_ms=40)
        async with ReferenceModelServer(mcfg) as srv:
            pipe = CallPipeline(MemoryDownlink(), call_id="st1", model_url=srv.url, turn_config=cfg,
                                config=PipelineConfig(caller_rate=RATE, drain_timeout_s=5))
            await pipe.run(play(caller))
            assert pipe.failed is None and pipe.inputs is not None
            frames = [i for i in pipe.inputs if i.kind == "caller_frame"]
            flags = [bool(i.speech) for i in frames]
            analysed = [k for k, i in enumerate(frames)
                        if i.features is not None and not math.isnan(i.features.turn_end_p)]
            assert analysed and analysed == check_frames(flags, 20, CHECK_MS)
            commits = [o for o in (pipe.outputs or []) if isinstance(o, Commit)]
            assert len(commits) == 1
            c = commits[0]
            # the pause that ended the turn was judged by the probability its frame carried
            # (the timer may fire late: the analysis ran inline on this loop just before)
            mine = [k for k in analysed if c.last_speech_at < frames[k].time <= c.time + 1e-9]
            latency_ms = (c.time - c.last_speech_at) * 1000
            if mine:
                feats = frames[mine[0]].features
                assert feats is not None
                want = SmartTurnRule(cfg).revised_ms(feats.turn_end_p)
                assert want - 1e-6 <= latency_ms < want + 200
            else:  # a starved loop: the frame came after the fallback silence had ended the turn
                assert latency_ms >= cfg.end_of_turn_silence_ms - 1e-6
            assert replay_outputs(cfg, pipe.inputs) == pipe.outputs

    run(main())
