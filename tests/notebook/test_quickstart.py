"""notebooks/quickstart.ipynb runs top to bottom under nbclient, in a kernel of this venv."""

from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from kernel_harness import KERNEL_NAME, write_kernelspec

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"


def cell_text(cell: dict) -> str:
    parts: list[str] = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif out["output_type"] in ("execute_result", "display_data"):
            parts.append(str(out["data"].get("text/plain", "")))
        elif out["output_type"] == "error":
            parts.append(f"{out['ename']}: {out['evalue']}")
    return "".join(parts)


@pytest.mark.slow
def test_quickstart_runs_top_to_bottom(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    wait_at = next(i for i, c in enumerate(nb.cells) if c.source.startswith("import time"))
    # Make sure 'report' has succeeded once before the wait cell forces a run: the wait must
    # be for the forced run, not return at once on this earlier success.
    nb.cells.insert(
        wait_at,
        nbformat.v4.new_code_cell(
            "import time as _t\nfrom redengine_nb.notebook import get_app as _g\n"
            "_end = _t.monotonic() + 30\n"
            "while _g().session['report'].last_success is None and _t.monotonic() < _end:\n"
            "    _t.sleep(0.05)"
        ),
    )
    nb.cells.insert(
        wait_at + 2,
        nbformat.v4.new_code_cell(
            "print('followed the forced run:', app.session['report'].last_success >= asked)"
        ),
    )
    kernel_dirs = write_kernelspec(tmp_path, {"REDENGINE_NB_LOGS": ":memory:"})
    km = KernelManager(
        kernel_name=KERNEL_NAME,
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dirs)]),
    )
    client = nbclient.NotebookClient(
        nb, km=km, timeout=120, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()

    code = [c for c in nb.cells if c.cell_type == "code"]
    by_source = {c.source.splitlines()[0]: cell_text(c) for c in code}
    assert not any(o["output_type"] == "error" for c in code for o in c.get("outputs", [])), (
        "a cell raised"
    )

    fetch = by_source["%%task every 5 seconds --name fetch"]
    assert fetch.startswith("registered task 'fetch' (every 5 seconds, thread)")
    report = by_source["%%task after task 'fetch' --name report"]
    assert report.startswith("registered task 'report' (after task 'fetch'")

    waited = next(text for src, text in by_source.items() if src == "import time")
    assert "report last succeeded at" in waited
    followed = by_source[
        "print('followed the forced run:', app.session['report'].last_success >= asked)"
    ]
    assert followed == "followed the forced run: True\n"
    # The task's prints are in its log, and in no cell but the one that asked for the log.
    log = by_source["%task log report --verbose"]
    assert "latest price:" in log
    assert "success" in log
    for src, text in by_source.items():
        if src != "%task log report --verbose":
            assert "latest price:" not in text, f"task output leaked into {src!r}"
            assert "fetched " not in text, f"task output leaked into {src!r}"

    table = by_source["%task disable fetch"]
    assert "disabled 'fetch'" in table
    assert "report" in table and "fetch" in table
    assert "scheduler stopped" in by_source["%scheduler stop"]


def test_quickstart_kernelspec_is_ipykernels() -> None:
    """JupyterLab opens it without a kernel dialog and without rewriting its metadata."""
    from ipykernel.kernelspec import get_kernel_dict

    spec = get_kernel_dict()
    meta = nbformat.read(NOTEBOOK, as_version=4).metadata
    assert meta.kernelspec == {
        "name": "python3",
        "display_name": spec["display_name"],
        "language": spec["language"],
    }
    assert meta.language_info["name"] == "python"
