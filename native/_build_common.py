"""Shared helpers for the cffi build scripts (run at build time by setup.py, not imported at
run time). Paths are made relative to the source tree root so setuptools accepts them."""

from __future__ import annotations

import os

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(HERE, "csrc")
CFLAGS = ["-O2", "-std=gnu11", "-Wall", "-Wno-unused-function"]


def src(name: str) -> str:
    """Return the path of csrc/``name`` relative to the current directory (setup.py's)."""
    return os.path.relpath(os.path.join(CSRC, name))
