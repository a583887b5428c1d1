"""engine/ stays the pure core: it imports no I/O framework (docs/architecture.md, import rules).

Its types are checked by ``make check`` (``mypy -p clutchcall``, strict on
``clutchcall.engine.*`` per pyproject.toml), which CI runs before the tests.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_engine_imports_no_io_frameworks() -> None:
    banned = ("import simpy", "import asyncio", "import aioquic", "from aioquic", "from asyncio",
              "import time", "import socket")
    for path in (ROOT / "engine").rglob("*.py"):
        text = path.read_text()
        for b in banned:
            assert f"\n{b}" not in text, f"{path} has {b!r}"
