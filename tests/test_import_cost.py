"""Importing the core stays cheap: no IPython, ipywidgets or traitlets (layers 0-2).

Each check runs in a fresh interpreter so that nothing imported by the test session
itself can hide a heavy import.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOK_ONLY = ("IPython", "ipywidgets", "traitlets", "ipykernel", "anywidget", "zmq")


def loaded_after(statement: str) -> set[str]:
    code = (
        "import json, sys\n"
        f"{statement}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "statement",
    [
        "import redengine_nb",
        "import redengine_nb.notebook",
        "import redengine_nb.notebook.cells",
        "from redengine_nb import RedEngine",
        "from redengine_nb import RedEngine; RedEngine(logs=':memory:')",
    ],
)
def test_core_does_not_import_the_notebook_stack(statement: str) -> None:
    heavy = loaded_after(statement) & set(NOTEBOOK_ONLY)
    assert not heavy, f"{statement!r} imported {sorted(heavy)}"


def test_importing_the_package_does_not_import_pandas() -> None:
    # pandas is needed by the status/log DataFrames only; the bare package is cheap.
    assert "pandas" not in loaded_after("import redengine_nb")


def test_the_extension_entry_point_loads_ipython_only_when_called() -> None:
    loaded = loaded_after("from redengine_nb import load_ipython_extension")
    assert "IPython" not in loaded


def test_an_engine_does_not_load_openssl() -> None:
    # hashlib maps OpenSSL (~2-3 MiB of RSS); only tasks imported from a file use it.
    loaded = loaded_after("from redengine_nb import RedEngine; RedEngine(logs=':memory:')")
    assert "hashlib" not in loaded


def test_croniter_is_imported_by_the_first_cron_phrase_only() -> None:
    engine = "from redengine_nb import RedEngine; app = RedEngine(logs=':memory:')"
    assert "croniter" not in loaded_after(engine + "; app.task('daily', func=print)")
    assert "croniter" in loaded_after(engine + "; app.task('cron */5 * * * *', func=print)")


def test_serve_registers_task_cells_without_ipython(tmp_path: Path) -> None:
    # `redengine-nb serve` runs a notebook headless: registering its %%task cells must not
    # pull in IPython's magics machinery. (An ordinary code cell does load IPython, on
    # purpose: its IPython syntax is translated by IPython's own transformer.)
    notebook = tmp_path / "jobs.ipynb"
    code = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None}
    text = {"cell_type": "markdown", "metadata": {}, "source": "# Jobs"}
    cells = [text, {**code, "source": "%%task every 10 minutes\nprint('hi')"}]
    document = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}
    notebook.write_text(json.dumps(document), encoding="utf-8")
    loaded = loaded_after(
        "from pathlib import Path\n"
        "from redengine_nb import RedEngine\n"
        "from redengine_nb.cli.common import Output\n"
        "from redengine_nb.cli.serve import run_setup\n"
        "from redengine_nb.notebook.nbfile import read_notebook\n"
        "app = RedEngine(logs=':memory:')\n"
        f"path = Path({str(notebook)!r})\n"
        "run_setup(app, read_notebook(path), path, Output(sys.stderr))\n"
        "assert len(app.session.tasks) == 1, app.session.tasks"
    )
    assert "IPython" not in loaded
