"""Progress bars: drawn on a terminal, never on a pipe, with --json or with --no-progress."""

from __future__ import annotations

import argparse
import importlib
import io
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clutchcall.cli import main


class _Tty(io.StringIO):
    """A stderr that says it is a terminal (and has no size, like an unsized pty)."""

    def isatty(self) -> bool:
        return True


def _stderr_of(monkeypatch: pytest.MonkeyPatch, argv: list[str], stream: io.StringIO) -> str:
    monkeypatch.setattr(sys, "stderr", stream)
    try:
        assert main(argv) == 0
    finally:
        monkeypatch.undo()
    return stream.getvalue()


EVAL = ["eval", "--synthetic", "1", "--synthetic-seconds", "10"]
COMPARE = ["sim", "compare", "--synthetic", "1", "--synthetic-seconds", "10"]
RUN = ["sim", "run", "--synthetic", "2", "--synthetic-seconds", "10"]


@pytest.mark.parametrize("argv,label", [(EVAL, "eval"), (COMPARE, "sim compare"),
                                        (RUN, "sim run")])
def test_bar_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                argv: list[str], label: str) -> None:
    err = _stderr_of(monkeypatch, argv, _Tty())
    assert f"{label}: 100%" in err and "call/s" in err
    capsys.readouterr()
    assert _stderr_of(monkeypatch, argv, io.StringIO()) == ""  # a pipe / file
    assert _stderr_of(monkeypatch, [*argv, "--json"], _Tty()) == ""
    assert _stderr_of(monkeypatch, [*argv, "--no-progress"], _Tty()) == ""


def test_sweep_bar_counts_call_simulations(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sim", "sweep", "--synthetic", "2", "--synthetic-seconds", "10", "--workers", "1",
            "--barge-confirm-ms", "0,300,600", "--out", str(tmp_path)]
    err = _stderr_of(monkeypatch, argv, _Tty())
    assert "sim sweep: 100%" in err and "6/6" in err  # 3 points x 2 calls
    assert _stderr_of(monkeypatch, [*argv, "--no-progress"], _Tty()) == ""
    capsys.readouterr()


def test_bar_on_a_real_pty() -> None:
    """A real terminal: the command's stderr is a pty (of no reported size)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "clutchcall", *EVAL], check=False,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                              timeout=120,
                              env={**os.environ, "COLUMNS": "", "LINES": ""})
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the pty has no writer left
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert proc.returncode == 0
    err = b"".join(chunks).decode()
    assert "eval: 100%" in err
    assert "eval" not in proc.stdout.decode().split("\n", 1)[0]  # stdout keeps only the table


def test_corpus_build_bar(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (see .ci/setup)")
    argv = ["corpus", "build", str(tmp_path), "--calls", "2", "--seed", "3", "--no-human"]
    assert "corpus build: 100%" in _stderr_of(monkeypatch, argv, _Tty())
    assert _stderr_of(monkeypatch, [*argv, "--no-progress"], _Tty()) == ""
    capsys.readouterr()


@pytest.mark.parametrize("module", ["clutchcall.twin.cmd_twin_check", "clutchcall.prod.edge.cmd_bench_edge"])
def test_long_commands_take_no_progress(module: str) -> None:
    parser = argparse.ArgumentParser()
    importlib.import_module(module).configure(parser)
    assert parser.parse_args(["--no-progress"]).no_progress is True
    assert parser.parse_args([]).no_progress is False
