"""clutchcall.traces: the one trace format (recorded traces and labelled calls) and the corpus.

Recorded traces (:mod:`clutchcall.traces.recorded`; replayed by :mod:`clutchcall.traces.replay`)
are what the production edge records and the simulator replays; labelled calls (:mod:`clutchcall.traces.labels`) are caller audio with
ground-truth labels, for tuning and testing; :mod:`clutchcall.traces.generator` builds a
labelled corpus, :mod:`clutchcall.traces.corpus` validates and counts one, and
:mod:`clutchcall.traces.drive` runs a labelled call through the turn engine into a recorded
trace. ``traces/FORMAT.md`` specifies both formats.

Modules are imported lazily by users (``from clutchcall.traces.recorded import ...``) so that
importing this package does not pull in polars or numpy.
"""

from clutchcall.traces.errors import TraceFormatError

__all__ = ["TraceFormatError"]
