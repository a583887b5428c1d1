"""``clutchcall netem``: run a command behind an emulated WAN link.

Theory of operation: the command builds a :class:`~clutchcall.netem.WanEmulator` from the
options, optionally starts ``--edge CMD`` (a shell command) in the **edge** namespace and
waits until it listens on ``--edge-port``, then runs ``CMD`` (after ``--``) in the **caller**
namespace with these environment variables set:

  CLUTCHCALL_NETEM_EDGE_ADDR    198.18.0.1, the edge side of the link (where servers listen)
  CLUTCHCALL_NETEM_CALLER_ADDR  198.18.0.2, the caller side
  CLUTCHCALL_NETEM_EDGE_NS / _CALLER_NS   the namespace names (for ``ip netns exec``)
  CLUTCHCALL_NETEM_LINK         the link configuration as JSON

CMD's stdin, stdout and stderr are ours: nothing else is written to stdout (the edge
command's stdout is sent to our stderr, and so are ``--stats``). The exit status is CMD's.
Everything -- both namespaces, the TUN devices, the forwarder, the edge command -- is
removed when CMD ends, on Ctrl-C (forwarded to CMD first), on SIGTERM, or on an error.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time

from clutchcall.engine.errors import ConfigError
from clutchcall.netem.emulator import WanEmulator, sweep_stale
from clutchcall.netem.model import parse_ge
from clutchcall.netem.tun import NetemError

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``clutchcall netem`` options to ``parser``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("CMD runs in the caller namespace; reach the edge at "
                     "$CLUTCHCALL_NETEM_EDGE_ADDR (198.18.0.1).\n"
                     "example: clutchcall netem --rtt-ms 50 --loss 0.01 --edge "
                     "'python3 -m http.server 8000' --edge-port 8000 -- "
                     "sh -c 'curl -s http://$CLUTCHCALL_NETEM_EDGE_ADDR:8000/ >/dev/null'")
    g = parser.add_argument_group("link (applied to each direction)")
    g.add_argument("--rtt-ms", type=float, default=0.0,
                   help="round-trip time; each direction gets half (default 0)")
    g.add_argument("--jitter-ms", type=float, default=0.0,
                   help="per-packet uniform delay variation +-J ms, per direction (default 0)")
    g.add_argument("--reorder", action="store_true",
                   help="let jittered packets overtake each other (default: never reorder)")
    g.add_argument("--loss", type=float, default=0.0,
                   help="Bernoulli loss probability per packet, per direction (default 0)")
    g.add_argument("--ge", metavar="p,r[,1-h[,1-k]]", default=None,
                   help="Gilbert-Elliott loss (netem gemodel order): P(good->bad), "
                        "P(bad->good), loss in bad (default 1), loss in good (default 0)")
    g.add_argument("--rate-kbps", type=float, default=None,
                   help="bottleneck rate in kbit/s per direction (default unlimited)")
    g.add_argument("--queue-packets", type=int, default=1000,
                   help="bottleneck queue limit before tail drop (default 1000)")
    g.add_argument("--seed", type=int, default=0, help="seed of loss and jitter (default 0)")
    parser.add_argument("--edge", metavar="SHELL_CMD", default=None,
                        help="shell command to run in the edge namespace for CMD's lifetime")
    parser.add_argument("--edge-port", type=int, default=None,
                        help="wait (<= 10 s) until the edge command listens on this port")
    parser.add_argument("--trace", metavar="FILE", default=None,
                        help="write one CSV row per packet (arrival, release, written, fate)")
    parser.add_argument("--stats", action="store_true",
                        help="print the forwarder's per-direction counters (JSON) to stderr")
    parser.add_argument("--sweep", action="store_true",
                        help="only remove namespaces left by killed runs, then exit")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD",
                        help="the command to run in the caller namespace")


def _listening(pid: int, port: int) -> bool:
    """Return whether ``pid``'s network namespace has a TCP listener or UDP socket on port."""
    hexport = f":{port:04X}"
    for proto, state in (("tcp", "0A"), ("tcp6", "0A"), ("udp", None), ("udp6", None)):
        try:
            with open(f"/proc/{pid}/net/{proto}") as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[1].endswith(hexport) and (state is None or cols[3] == state):
                        return True
        except (OSError, StopIteration):
            continue
    return False


def run(args: argparse.Namespace) -> int:
    """Run the command (see the module docstring); return CMD's exit status.

    Returns 2 on bad options and 1 if the emulator cannot be set up (message on stderr).
    """
    if args.sweep:
        for name in sweep_stale():
            print(f"netem: removed {name}", file=sys.stderr)
        return 0
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        print("clutchcall netem: give the command to run after --", file=sys.stderr)
        return 2
    try:
        wan = WanEmulator(rtt_ms=args.rtt_ms, jitter_ms=args.jitter_ms, reorder=args.reorder,
                          loss=args.loss, ge=parse_ge(args.ge) if args.ge else None,
                          rate_kbps=args.rate_kbps, queue_packets=args.queue_packets,
                          seed=args.seed, trace_path=args.trace)
    except ConfigError as e:
        print(f"clutchcall netem: {e}", file=sys.stderr)
        return 2
    proc: subprocess.Popen[bytes] | None = None
    try:
        with wan:
            if args.edge:
                edge = wan.popen_in("edge", ["sh", "-c", args.edge], stdin=subprocess.DEVNULL,
                                    stdout=sys.stderr)
                if args.edge_port is not None:
                    deadline = time.monotonic() + 10.0
                    while not _listening(edge.pid, args.edge_port):
                        if edge.poll() is not None or time.monotonic() > deadline:
                            print(f"clutchcall netem: the edge command is not listening on "
                                  f"port {args.edge_port}", file=sys.stderr)
                            return 1
                        time.sleep(0.02)
            proc = wan.popen_in("caller", cmd)
            try:
                rc = proc.wait()
            except KeyboardInterrupt:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=3.0)
                except subprocess.TimeoutExpired:
                    pass
                rc = 130
        if args.stats:
            print(json.dumps({"netem_stats": wan.stats}), file=sys.stderr)
        return rc if rc >= 0 else 128 - rc
    except NetemError as e:
        print(f"clutchcall netem: {e}", file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        print(f"clutchcall netem: {e}", file=sys.stderr)
        return 127
