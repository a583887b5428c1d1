"""QUIC tests run once per QUIC core: a module opts in with
``pytestmark = [..., pytest.mark.usefixtures("each_quic_core")]``; the fixture sets
``$CLUTCHCALL_QUIC_CORE`` (read by IngressConfig, the caller and subprocesses such as
``clutchcall serve``) and skips a core that is not installed here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clutchcall.engine.errors import ConfigError
from clutchcall.prod.quic.core import QUIC_CORE_ENV, QUIC_CORES, get_core


@pytest.fixture(params=QUIC_CORES)
def each_quic_core(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Yield the name of the QUIC core this run of the test uses (see module docstring)."""
    name = str(request.param)
    try:
        get_core(name)
    except ConfigError as exc:
        pytest.skip(f"QUIC core {name} not usable here: {exc}")
    monkeypatch.setenv(QUIC_CORE_ENV, name)
    yield name
