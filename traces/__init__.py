"""clutchcall.traces: the one trace format (recorded traces and labelled calls) and the corpus.

Recorded traces (:mod:`clutchcall.traces.recorded`) are what the production edge records and
the simulator replays; labelled calls (:mod:`clutchcall.traces.labels`) are caller audio with
ground-truth labels, for tuning and testing. ``traces/FORMAT.md`` specifies both.
"""

from clutchcall.traces.errors import TraceFormatError

__all__ = ["TraceFormatError"]
