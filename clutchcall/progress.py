"""Progress bars for long commands: on a terminal only, never on a pipe or with ``--json``.

Theory of operation: a command adds ``--no-progress`` with :func:`add_flag` and asks
:func:`wanted` whether to draw (not ``--no-progress``, not ``--json``, and stderr is a
terminal); :func:`bar` returns a tqdm bar on stderr (a disabled one when not wanted, whose
``update`` costs nothing), and :func:`track` wraps an iterable the same way. Output on stdout
is never touched, so piped or ``--json`` output stays byte-for-byte what it was.

tqdm rather than rich: it is one small pure-Python package with no dependencies, draws a
single line on stderr and already knows how to stay silent on a non-terminal; the commands
need a counter with a rate and an ETA, not rich's rendering (which pulls in pygments and
markdown-it).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def add_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--no-progress`` (dest ``no_progress``) to ``parser``."""
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (none is drawn on a pipe or with --json anyway)")


def wanted(args: argparse.Namespace | None = None, *, stream: Any = None) -> bool:
    """Return True when a bar should be drawn: ``args`` has neither ``no_progress`` nor
    ``json`` set, and ``stream`` (default stderr) is a terminal."""
    if args is not None and (getattr(args, "no_progress", False) or getattr(args, "json", False)):
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def bar(total: int | None, desc: str, *, enabled: bool, unit: str = "it") -> Any:
    """Return a tqdm bar on stderr counting to ``total`` (a context manager with
    ``update(n)``); a disabled bar when not ``enabled``."""
    from tqdm import tqdm

    try:  # a terminal that reports no size (0 columns) would get an empty bar
        sized = os.get_terminal_size(sys.stderr.fileno()).columns > 0
    except (AttributeError, OSError, ValueError):
        sized = False
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr,
                dynamic_ncols=sized, ncols=None if sized else 80, nrows=None if sized else 24,
                leave=True, smoothing=0.1)


def track(items: Iterable[T], desc: str, *, enabled: bool, total: int | None = None,
          unit: str = "it") -> Iterator[T]:
    """Yield ``items``, advancing a bar (see :func:`bar`) after each one."""
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with bar(total, desc, enabled=enabled, unit=unit) as b:
        for item in items:
            yield item
            b.update(1)
