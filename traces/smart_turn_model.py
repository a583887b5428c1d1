"""The smart-turn v3.2 model file: fetched once, cached, SHA-256 pinned (like the ARCTIC samples).

Theory of operation: the model (``smart-turn-v3.2-cpu.onnx``, BSD-2, Daily) ships inside the
``pipecat-ai`` wheel. :func:`fetch_model` makes sure ``CACHE/smart_turn/`` holds it, from the
first source that has it: the cache itself, an installed ``pipecat-ai``'s copy (found with
``importlib.util.find_spec``, which imports nothing: the runtime never imports pipecat), or
``pip download pipecat-ai==PINNED`` (the wheel only, no dependencies; the package registry is
all CI can reach) with the member extracted and the wheel's licence kept next to it. Every
source is checked against :data:`~clutchcall.engine.audio.smart_turn.MODEL_SHA256`.
:func:`load_model` returns the session (``engine/audio/smart_turn.py``) over those bytes;
:func:`shared_model` one per process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path

from clutchcall.engine.audio.smart_turn import MODEL_SHA256, SmartTurn, SmartTurnError
from clutchcall.traces.speech import default_cache_dir

PIPECAT_VERSION = "1.14.0"
"""The pipecat-ai release whose wheel carries the pinned model."""
MODEL_MEMBER = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
"""The model's path inside the wheel (and inside an installed pipecat-ai)."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def installed_copy() -> Path | None:
    """Return the model file inside an installed ``pipecat-ai`` (found without importing
    pipecat), or None. Not checked here: :func:`fetch_model` checks the digest."""
    try:
        spec = importlib.util.find_spec("pipecat")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc).parent / MODEL_MEMBER
        if p.is_file():
            return p
    return None


def fetch_model(cache_dir: Path | None = None, *, use_installed: bool = True,
                download: bool = True) -> Path:
    """Make sure the pinned model is at ``cache_dir/smart_turn/smart-turn-v3.2-cpu.onnx`` and
    return its path (module docstring for the sources). Raises :class:`SmartTurnError` if no
    source has it or a digest does not match."""
    target_dir = (cache_dir or default_cache_dir()) / "smart_turn"
    target = target_dir / Path(MODEL_MEMBER).name
    if target.is_file() and _sha256(target.read_bytes()) == MODEL_SHA256:
        return target
    data: bytes | None = None
    licence: bytes | None = None
    local = installed_copy() if use_installed else None
    if local is not None:
        raw = local.read_bytes()
        if _sha256(raw) == MODEL_SHA256:
            data = raw
    if data is None:
        if not download:
            raise SmartTurnError("smart-turn model: not cached, no installed copy matches the pin, "
                                 "and downloads are off")
        data, licence = _download_wheel_member()
    target_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    if licence is not None:
        (target_dir / "LICENSE").write_bytes(licence)
    return target


def _download_wheel_member() -> tuple[bytes, bytes | None]:
    """``pip download`` the pinned pipecat-ai wheel (no deps); return (model, licence)."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = f"pipecat-ai=={PIPECAT_VERSION}"
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
               "--no-deps", "--only-binary", ":all:", "-d", tmp, spec]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SmartTurnError(f"pip download {spec} failed: {proc.stderr.strip()[-500:]}")
        wheels = sorted(Path(tmp).glob("pipecat_ai-*.whl"))
        if not wheels:
            raise SmartTurnError(f"pip download {spec} produced no wheel")
        with zipfile.ZipFile(wheels[0]) as zf:
            try:
                data = zf.read(MODEL_MEMBER)
            except KeyError:
                raise SmartTurnError(f"{MODEL_MEMBER} is not in {wheels[0].name}") from None
            lic = [n for n in zf.namelist() if n.endswith((".dist-info/licenses/LICENSE",
                                                           ".dist-info/LICENSE"))]
            licence = zf.read(lic[0]) if lic else None
    if _sha256(data) != MODEL_SHA256:
        raise SmartTurnError(f"{MODEL_MEMBER}: sha256 {_sha256(data)} does not match the "
                             f"pinned {MODEL_SHA256}")
    return data, licence


def load_model(cache_dir: Path | None = None, *, download: bool = True) -> SmartTurn:
    """Return a :class:`SmartTurn` session over the pinned model (fetched if needed)."""
    return SmartTurn(fetch_model(cache_dir, download=download).read_bytes())


@lru_cache(maxsize=1)
def shared_model() -> SmartTurn:
    """One session per process (read-only; loading takes a few hundred ms), for shells that
    analyse many calls (the edge)."""
    return load_model()
