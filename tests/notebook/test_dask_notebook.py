"""notebooks/dask.ipynb runs top to bottom under nbclient, in a real kernel of this venv:
its ``%%task --execution dask`` cell and ``execution="dask"`` function run on the
LocalCluster the kernel's scheduler starts (and closes when the kernel shuts down)."""

from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from kernel_harness import KERNEL_NAME, write_kernelspec
from test_quickstart import cell_text

pytest.importorskip("distributed")

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "dask.ipynb"


@pytest.mark.slow
def test_dask_notebook_runs_top_to_bottom(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    kernel_dirs = write_kernelspec(tmp_path, {"REDENGINE_NB_LOGS": ":memory:"})
    km = KernelManager(
        kernel_name=KERNEL_NAME,
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dirs)]),
    )
    client = nbclient.NotebookClient(
        nb, km=km, timeout=180, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()

    code = [c for c in nb.cells if c.cell_type == "code"]
    by_source = {c.source.splitlines()[0]: cell_text(c) for c in code}
    assert not any(o["output_type"] == "error" for c in code for o in c.get("outputs", [])), (
        "a cell raised"
    )
    squares = by_source["%%task every 10 seconds --name squares --execution dask"]
    assert squares.startswith("registered task 'squares' (every 10 seconds, dask)")
    expected = sum(i * i for i in range(200_000))
    waited = next(text for src, text in by_source.items() if src == "import time")
    assert f"double returned {2 * expected}" in waited
    assert "workers: " in waited and "workers: 0" not in waited
    log = by_source["%task log squares --verbose"]
    assert "success" in log
    assert "summed on worker process" in log and str(expected) in log
