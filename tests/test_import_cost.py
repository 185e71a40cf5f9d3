"""Importing the core stays cheap: no IPython, ipywidgets or traitlets (layers 0-2).

Each check runs in a fresh interpreter so that nothing imported by the test session
itself can hide a heavy import.
"""

from __future__ import annotations

import json
import subprocess
import sys

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
