"""Argument helpers shared by the ``clutchcall sim ...`` and ``clutchcall eval`` commands."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from clutchcall.engine import TurnConfig
from clutchcall.engine.audio.vad import VAD_BACKENDS
from clutchcall.engine.config import BARGE_YIELDS, END_OF_TURN_RULES, POLICY_NAMES
from clutchcall.engine.errors import ConfigError
from clutchcall.sim.config import AGENTS, TRANSPORTS, ModelConfig, NetConfig, SimConfig
from clutchcall.sim.link import LinkConfig
from clutchcall.sim.presets import PRESETS, preset
from clutchcall.sim.runner import SPLITS, load_calls

_TURN_FIELDS = list(TurnConfig().to_dict())


def add_calls(parser: argparse.ArgumentParser, *, nargs: str = "*") -> None:
    parser.add_argument("calls", nargs=nargs, metavar="CALLS",
                        help="labelled calls (NAME.json + NAME.wav) or directories of them "
                             "(default: the checked-in corpus traces/corpus)")
    parser.add_argument("--synthetic", type=int, default=0, metavar="N",
                        help="also simulate N generated labelled calls")
    parser.add_argument("--synthetic-seconds", type=float, default=120.0)


def add_net(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("caller leg")
    g.add_argument("--transport", choices=TRANSPORTS, default="quic")
    g.add_argument("--rtt-ms", type=float, default=50.0)
    g.add_argument("--loss", type=float, default=0.0, help="Bernoulli loss per direction")
    g.add_argument("--jitter-ms", type=float, default=0.0, help="mean exponential jitter")
    g.add_argument("--burst-loss", metavar="P:R", default=None,
                   help="Gilbert-Elliott bursts: P(good->bad):P(bad->good)")
    g.add_argument("--rate-kbps", type=float, default=0.0, help="bottleneck (0 = none)")
    g.add_argument("--queue-bytes", type=int, default=64_000)
    g.add_argument("--late-frame-ms", type=float, default=60.0, help="edge jitter buffer depth")
    g.add_argument("--zero-rtt", action="store_true", help="QUIC 0-RTT resumption")
    g.add_argument("--quic-ack-every", type=int, default=2,
                   help="fast QUIC model: ACK every N packets (RFC 9000: 2)")
    g.add_argument("--quic-ack-delay-ms", type=float, default=25.0,
                   help="fast QUIC model: delayed-ACK timer (RFC 9000: 25 ms; aioquic: 1)")
    g.add_argument("--quic-datagrams", action="store_true",
                   help="QUIC: audio frames in DATAGRAMs (lost ones are concealed, not retransmitted)")


def add_model(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--ttfa-ms", type=float, default=350.0, help="median time to first audio")
    g.add_argument("--ttfa-sigma", type=float, default=0.35)
    g.add_argument("--no-prefill", action="store_true",
                   help="no continuous prefill: first audio grows with the turn's length")
    g.add_argument("--cancel-delay-ms", type=float, default=50.0)


def add_turn(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("turn engine")
    g.add_argument("--preset", choices=list(PRESETS), default="clutchcall")
    g.add_argument("--vad", choices=VAD_BACKENDS, default="webrtc",
                   help="VAD backend that judges the calls' audio (engine/audio/vad.py; "
                        "silero needs the [silero] extra; default webrtc)")
    for f in _TURN_FIELDS:
        if f == "policy":
            g.add_argument("--policy", choices=POLICY_NAMES, default=None, dest=f,
                           help="turn policy (default: the preset's)")
        elif f == "speculate":
            g.add_argument("--speculate", action=argparse.BooleanOptionalAction, default=None,
                           dest=f, help="speculative commit (default: the preset's; on for clutchcall)")
        elif f == "end_of_turn_rule":
            g.add_argument("--end-of-turn-rule", choices=END_OF_TURN_RULES, default=None, dest=f,
                           help="end-of-turn silence per pause: fixed, adaptive, prosodic (the final "
                                "burst's pitch and level) or smart-turn (opt-in model, the "
                                "[smartturn] extra); engine/endpoint.py")
        elif f == "barge_yield":
            g.add_argument("--barge-yield", choices=BARGE_YIELDS, default=None, dest=f,
                           help="soft barge-in: duck or pause the agent while a barge-in is "
                                "pending (default: the preset's)")
        else:
            g.add_argument("--" + f.replace("_", "-"), type=int, default=None, dest=f)


def add_agent(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--agent", choices=AGENTS, default=default,
                        help="scripted: the agent plays the labelled timeline, every segment "
                             "is scored; reactive: replies start at the model's first audio "
                             f"(latency prediction) (default: {default})")


def add_split(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--split", choices=SPLITS, default=default,
                        help="which corpus split to use, from the directory's MANIFEST.json "
                             f"(tune on train, report on test; default: {default})")


def add_executor(parser: argparse.ArgumentParser, *, default_workers: str = "all cores") -> None:
    """Add the fan-out options (``--executor``, ``--dask-scheduler``, ``--workers``,
    ``--chunk``) and ``--no-progress``; read them back with :func:`executor_spec`."""
    from clutchcall.progress import add_flag

    g = parser.add_argument_group("executor (see sim/README.md)")
    g.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="local: this process or a multiprocessing pool; dask: a Dask cluster "
                        "(default local)")
    g.add_argument("--dask-scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="the Dask scheduler to use (default: start a LocalCluster here)")
    g.add_argument("--workers", "--processes", type=int, default=None, dest="workers",
                   metavar="N", help=f"local pool / LocalCluster worker processes "
                                     f"(default: {default_workers})")
    g.add_argument("--chunk", type=int, default=None, metavar="CALLS",
                   help="calls per task (default: a whole grid point per task when there are "
                        "enough points, else cut to about 4 tasks per worker)")
    add_flag(parser)


def executor_spec(a: argparse.Namespace, default_workers: int | None = None) -> Any:
    """Return the :class:`~clutchcall.sim.executor.ExecutorSpec` the options ask for.
    Raises ConfigError for a bad combination."""
    from clutchcall.sim.executor import ExecutorSpec

    workers = a.workers if a.workers is not None else default_workers
    if a.executor == "dask" and a.dask_scheduler is None and a.workers is None:
        workers = None  # a LocalCluster uses all cores unless told otherwise
    return ExecutorSpec(kind=a.executor, workers=workers, scheduler=a.dask_scheduler,
                        chunk=a.chunk)


def executor_session(a: argparse.Namespace, default_workers: int | None = None) -> Any:
    """Return an :class:`~clutchcall.sim.executor.ExecutorSession` for the options (a Dask
    cluster starts in the background now, while the command loads its calls). Use it as a
    context manager around the whole command and call ``release()`` once the results are
    in. Raises ConfigError for a bad combination."""
    from clutchcall.sim.executor import ExecutorSession

    return ExecutorSession(executor_spec(a, default_workers))


def run_points(a: argparse.Namespace, calls: list[Any], points: list[Any], command: str, *,
               out_dir: str | None = None, session: Any = None) -> Any:
    """Run ``points`` over ``calls`` on the executor the options ask for (local default: one
    worker, this process) -- ``session``'s (:func:`executor_session`) if given --, with a
    progress bar on a terminal (not with ``--json`` or ``--no-progress``); return the
    :class:`~clutchcall.sim.executor.GridResult`."""
    from clutchcall.progress import bar, wanted
    from clutchcall.sim.executor import run_grid

    spec = session.spec if session is not None else executor_spec(a, default_workers=1)
    client = session.client if session is not None else None
    with bar(len(points) * len(calls), command, enabled=wanted(a), unit="call") as b:
        return run_grid(calls, points, spec, out_dir=out_dir, progress=b.update, client=client)


def report_failures(command: str, failures: list[Any], out_dir: str | None) -> int:
    """Print each failed call by name on stderr (and write ``OUT/failures.csv`` when
    ``out_dir`` is given); return the exit code: 0 if none failed, else 1."""
    path = os.path.join(out_dir, "failures.csv") if out_dir else None
    if path and os.path.exists(path):
        os.remove(path)
    if not failures:
        return 0
    for f in failures:
        where = " ".join(f"{k}={v}" for k, v in f.labels.items())
        print(f"clutchcall {command}: call {f.call} raised{' at ' + where if where else ''}: "
              f"{f.error}", file=sys.stderr)
    if path:
        import polars as pl

        pl.DataFrame([{"point": f.point, "labels": json.dumps(f.labels), "call": f.call,
                       "error": f.error} for f in failures]).write_csv(path)
    print(f"clutchcall {command}: {len(failures)} call simulation(s) raised; the other "
          f"results are complete{' (list in ' + path + ')' if path else ''}", file=sys.stderr)
    return 1


def add_seed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=1)


def net_config(a: argparse.Namespace) -> NetConfig:
    link: dict[str, Any] = {"rtt_ms": a.rtt_ms, "loss": a.loss, "jitter_ms": a.jitter_ms,
                            "rate_kbps": a.rate_kbps, "queue_bytes": a.queue_bytes}
    if a.burst_loss:
        try:
            p, r = (float(x) for x in a.burst_loss.split(":"))
        except ValueError:
            raise ConfigError(f"--burst-loss: expected P:R, got {a.burst_loss!r}") from None
        link.update(ge_p=p, ge_r=r)
    lc = LinkConfig(**link)
    return NetConfig(transport=a.transport, uplink=lc, downlink=lc,
                     late_frame_ms=a.late_frame_ms, zero_rtt=a.zero_rtt,
                     quic_ack_every=a.quic_ack_every, quic_ack_delay_ms=a.quic_ack_delay_ms,
                     quic_datagrams=getattr(a, "quic_datagrams", False))


def model_config(a: argparse.Namespace) -> ModelConfig:
    return ModelConfig(ttfa_median_ms=a.ttfa_ms, ttfa_sigma=a.ttfa_sigma,
                       prefill=not a.no_prefill, cancel_delay_ms=a.cancel_delay_ms)


def turn_config(a: argparse.Namespace) -> TurnConfig:
    changes = {f: getattr(a, f) for f in _TURN_FIELDS if getattr(a, f, None) is not None}
    return preset(a.preset).replace(**changes)


def sim_config(a: argparse.Namespace, turn: TurnConfig | None = None) -> SimConfig:
    return SimConfig(turn=turn or turn_config(a), net=net_config(a), model=model_config(a),
                     seed=a.seed, agent=getattr(a, "agent", "reactive"))


def calls_from(a: argparse.Namespace, frame_ms: int = 20, aggressiveness: int = 2) -> list:
    return load_calls(a.calls, frame_ms=frame_ms, aggressiveness=aggressiveness,
                      synthetic=a.synthetic, synthetic_seconds=a.synthetic_seconds,
                      split=getattr(a, "split", "all"), vad=getattr(a, "vad", "webrtc"),
                      smart_turn=getattr(a, "end_of_turn_rule", None) == "smart-turn")


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    """Return rows as a fixed-width text table."""
    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) if cells else len(c)
              for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(x.rjust(w) for x, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def dump_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=False)
