"""Session-wide test setup: every test, and every process a test starts, runs this checkout.

pytest's ``pythonpath = ["."]`` (pyproject.toml) puts the checkout first on ``sys.path`` for the
test process; subprocesses (``python -m clutchcall serve``, workers) get it through PYTHONPATH, so
a second checkout's editable install can never answer an import here.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
_prev = os.environ.get("PYTHONPATH", "")
if ROOT not in _prev.split(os.pathsep):
    os.environ["PYTHONPATH"] = ROOT + (os.pathsep + _prev if _prev else "")
