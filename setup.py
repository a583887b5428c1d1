"""Build glue for the native data plane (metadata lives in pyproject.toml).

The cffi extension modules under native/ are declared here through ``cffi_modules``:
- ``clutchcall.native._rings`` (mcache/dcache rings) always builds;
- ``clutchcall.native._uring`` (io_uring UDP reactor) builds if liburing links;
- ``clutchcall.native._xdp`` (AF_XDP socket) builds if libxdp and libbpf link.
A missing library prints one line here and the Python side falls back to asyncio at run time.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile

from setuptools import find_packages, setup

PROBES = {
    "liburing": (("#include <liburing.h>\nint main(void){struct io_uring r;"
                  "return io_uring_queue_init(2,&r,0);}\n"), ["-luring"]),
    "libxdp": (("#include <xdp/xsk.h>\n#include <bpf/libbpf.h>\n"
                "int main(void){return xsk_umem__fd((void*)0)+libbpf_major_version();}\n"),
               ["-lxdp", "-lbpf"]),
}


def have(name: str) -> bool:
    """Return True if the C library ``name`` (a PROBES key) compiles and links here."""
    if os.environ.get(f"CLUTCHCALL_NO_{name.upper()}"):
        return False
    code, libs = PROBES[name]
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    with tempfile.TemporaryDirectory() as tmp:
        c_path = os.path.join(tmp, "probe.c")
        with open(c_path, "w") as f:
            f.write(code)
        try:
            res = subprocess.run([*cc, c_path, "-o", os.path.join(tmp, "probe"), *libs],
                                 capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return res.returncode == 0


cffi_modules = ["native/_build_rings.py:ffibuilder"]
HAVE_URING = os.path.exists("native/_build_uring.py")
HAVE_XDP = os.path.exists("native/_build_xdp.py")
if HAVE_URING and have("liburing"):
    cffi_modules.append("native/_build_uring.py:ffibuilder")
else:
    print("clutchcall: liburing not found: io_uring reactor not built (asyncio fallback)",
          file=sys.stderr)
if HAVE_XDP and have("libxdp"):
    cffi_modules.append("native/_build_xdp.py:ffibuilder")
else:
    print("clutchcall: libxdp/libbpf not found: AF_XDP path not built (asyncio fallback)",
          file=sys.stderr)

# The distribution's packages: clutchcall/ is the root package (CLI and tool glue); the top-level
# part folders (engine/ sim/ prod/ native/ traces/) are its subpackages through committed relative
# symlinks clutchcall/engine -> ../engine, ... so the import tree exists on disk for every tool
# (mypy, ruff, pyright, IDEs) and plain package discovery finds it. See docs/architecture.md.
setup(cffi_modules=cffi_modules,
      packages=find_packages(include=["clutchcall", "clutchcall.*"]))
