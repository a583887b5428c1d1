"""The build: the rings always build; a missing liburing / libxdp means that module is not
built (one clear line at build time) and, at run time, open_udp_io falls back to asyncio with
one log line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_missing_libraries_build_only_the_rings(tmp_path: Path) -> None:
    pytest.importorskip("setuptools")
    pytest.importorskip("cffi")
    tree = tmp_path / "src"
    shutil.copytree(ROOT / "native", tree / "native",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.o"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    # clutchcall/ with its committed part symlinks (clutchcall/native -> ../native, ...)
    shutil.copytree(ROOT / "clutchcall", tree / "clutchcall", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    for pkg in ("engine", "sim", "prod", "traces"):
        (tree / pkg).mkdir(exist_ok=True)
    env = dict(os.environ, CLUTCHCALL_NO_LIBURING="1", CLUTCHCALL_NO_LIBXDP="1")
    res = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                         cwd=tree, env=env, capture_output=True, text=True, timeout=180,
                         check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "liburing not found: io_uring reactor not built" in res.stderr
    built = sorted(p.name.split(".")[0] for p in (tree / "native").glob("*.so"))
    assert built == ["_rings"]


def test_runtime_fallback_when_reactor_module_is_missing() -> None:
    code = (
        "import sys, logging\n"
        "sys.modules['clutchcall.native._uring'] = None  # as if liburing was missing at build\n"
        "logging.basicConfig(level=logging.WARNING, format='%(name)s %(message)s')\n"
        "from clutchcall.native.udpio import open_udp_io, URING_BUILT\n"
        "assert not URING_BUILT\n"
        "io = open_udp_io('auto', '127.0.0.1', 0)\n"
        "print('KIND', io.kind)\n"
        "io.close()\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.returncode == 0, res.stderr
    assert "KIND asyncio" in res.stdout
    lines = [ln for ln in res.stderr.splitlines() if "io_uring unavailable" in ln]
    assert len(lines) == 1 and "not built" in lines[0]


@pytest.mark.parametrize("module", ["_rings", "_uring"])
def test_modules_built_here(module: str) -> None:
    # CI installs liburing-dev: both must be present (the native paths are exercised for real)
    __import__(f"clutchcall.native.{module}")
