"""Typed errors of the trace format.

Theory of operation: every malformed recorded trace or labelled call is reported as one
:class:`TraceFormatError` that names the file, the field and the problem, in that order, so a
validator can print one clear line per bad file. Readers raise it before returning anything:
nothing half-read is ever used.
"""

from __future__ import annotations

from pathlib import Path

from clutchcall.engine.errors import ClutchCallError


class TraceFormatError(ClutchCallError, ValueError):
    """A trace or labelled-call file is malformed.

    Attributes: ``path`` (the file), ``field`` (a dotted/indexed path inside it, e.g.
    ``segments[3].kind``; ``"-"`` for the file as a whole) and ``problem`` (what is wrong).
    ``str(err)`` is ``"PATH: FIELD: PROBLEM"``.
    """

    def __init__(self, path: str | Path, field: str, problem: str) -> None:
        self.path = str(path)
        self.field = field
        self.problem = problem
        super().__init__(f"{self.path}: {field}: {problem}")
