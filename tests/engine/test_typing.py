"""engine/ is mypy --strict clean (DESIGN rule 10), checked through the installed mapping."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_engine_is_mypy_strict_clean(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    pkg = tmp_path / "clutchcall"
    pkg.mkdir()
    shutil.copy(ROOT / "clutchcall" / "__init__.py", pkg / "__init__.py")
    (pkg / "py.typed").touch()
    (pkg / "engine").symlink_to(ROOT / "engine")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "-p", "clutchcall.engine"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={"MYPYPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_engine_imports_no_io_frameworks() -> None:
    banned = ("import simpy", "import asyncio", "import aioquic", "from aioquic", "from asyncio",
              "import time", "import socket")
    for path in (ROOT / "engine").rglob("*.py"):
        if path.name in ("bench.py", "demo.py"):
            continue  # commands, not the core
        text = path.read_text()
        for b in banned:
            assert f"\n{b}" not in text, f"{path} has {b!r}"
