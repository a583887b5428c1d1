"""Both notebooks execute, top to bottom, in their small configuration (so they cannot rot)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture()
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec that runs this interpreter (the one clutchcall is installed in)."""
    spec = tmp_path / "kernels" / "clutchcall-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "clutchcall test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.setenv("CLUTCHCALL_NB_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return "clutchcall-test"


@pytest.mark.parametrize("name", ["tuning.ipynb", "latency.ipynb"])
def test_notebook_executes(name: str, kernel: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=60, kernel_name=kernel,
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError on any failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any(o.get("output_type") == "stream" for o in outputs)


def test_tuning_notebook_sweeps_on_dask(kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """CLUTCHCALL_EXECUTOR=dask: the notebook's sweep runs on a LocalCluster it starts."""
    pytest.importorskip("distributed")
    monkeypatch.setenv("CLUTCHCALL_EXECUTOR", "dask")
    nb = nbformat.read(NOTEBOOKS / "tuning.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and "ExecutorSpec(" in c.source)
    cell.source += "\nassert executor.kind == 'dask', executor\nprint('executor:', executor.kind)"
    client = nbclient.NotebookClient(nb, timeout=90, kernel_name=kernel,
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    text = "".join(o.get("text", "") for o in cell.get("outputs", []))
    assert "executor: dask" in text


def test_notebooks_are_the_generated_ones() -> None:
    """The committed notebooks are what notebooks/build_notebooks.py writes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_notebooks", NOTEBOOKS / "build_notebooks.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name, cells in (("tuning.ipynb", mod.TUNING), ("latency.ipynb", mod.LATENCY)):
        on_disk = nbformat.read(NOTEBOOKS / name, as_version=4)
        assert [c.source for c in on_disk.cells] == [src for _k, src in cells]
    assert os.path.exists(NOTEBOOKS / "twin_result.json")
