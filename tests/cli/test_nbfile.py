"""Reading notebook files for serve: cells, tags, %%task cells, IPython syntax headless."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from redengine_nb.notebook.nbfile import (
    SKIP_TAG,
    HeadlessShell,
    NotebookError,
    read_notebook,
    split_task_cell,
    to_python,
)


def test_split_task_cell_takes_the_line_and_the_body_as_ipython_does() -> None:
    assert split_task_cell("%%task every 5 seconds --name x\nprint(1)\n") == (
        "every 5 seconds --name x",
        "print(1)\n",
    )
    assert split_task_cell("\n\n%%task daily\nx = 1") == ("daily", "x = 1")
    assert split_task_cell("%%task after task 'a b'") == ("after task 'a b'", "")


@pytest.mark.parametrize("source", ["print(1)", "%%tasks\nx", "x = 1\n%%task daily\ny", ""])
def test_other_cells_are_not_task_cells(source: str) -> None:
    assert split_task_cell(source) is None


def test_read_notebook_gives_numbers_ids_tags_and_what_is_skipped(
    write_nb: Callable[..., Path],
) -> None:
    path = write_nb(
        [
            {"cell_type": "markdown", "id": "m1", "metadata": {}, "source": "# title"},
            "x = 1",
            ("print('watching')", [SKIP_TAG]),
            "%%task daily --name t\nprint(x)",
            "   \n",
        ]
    )
    cells = read_notebook(path)
    assert [c.number for c in cells] == [1, 2, 3, 4, 5]
    assert [c.skipped for c in cells] == [True, False, True, False, True]
    assert cells[2].tags == (SKIP_TAG,)
    assert cells[3].task == ("daily --name t", "print(x)")
    assert cells[1].task is None
    assert cells[0].cell_id == "m1"
    assert cells[1].label.startswith("cell 2 (id ")


def test_source_given_as_a_list_of_lines_is_joined(tmp_path: Path) -> None:
    nb = {
        "cells": [{"cell_type": "code", "metadata": {}, "source": ["a = 1\n", "b = 2"]}],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 4,
    }
    path = tmp_path / "lines.ipynb"
    path.write_text(json.dumps(nb))
    assert read_notebook(path)[0].source == "a = 1\nb = 2"


def test_an_old_format_goes_through_nbformat(tmp_path: Path) -> None:
    from nbformat import v3

    nb = v3.new_notebook(worksheets=[v3.new_worksheet(cells=[v3.new_code_cell("y = 2")])])
    path = tmp_path / "old.ipynb"
    path.write_text(v3.writes_json(nb))
    cells = read_notebook(path)
    assert [(c.cell_type, c.source) for c in cells] == [("code", "y = 2")]


def test_missing_file_folder_and_non_json_are_named(tmp_path: Path) -> None:
    with pytest.raises(NotebookError, match=r"nope\.ipynb: no such file"):
        read_notebook(tmp_path / "nope.ipynb")
    with pytest.raises(NotebookError, match="is a folder"):
        read_notebook(tmp_path)
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{ not json")
    with pytest.raises(NotebookError, match=r"bad\.ipynb: not a notebook: not JSON \(line 1"):
        read_notebook(bad)


@pytest.mark.parametrize(
    "content",
    [{"hello": "world"}, [1, 2], {"nbformat": 4, "cells": "nope"}],
)
def test_json_that_is_not_a_notebook_is_refused(tmp_path: Path, content: Any) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps(content))
    with pytest.raises(NotebookError, match=r"data\.json: not a"):
        read_notebook(path)


def test_ipython_syntax_becomes_calls_on_get_ipython() -> None:
    code = to_python("!echo hi\n%load_ext redengine_nb\nx = 1\n")
    assert "get_ipython().system('echo hi')" in code
    assert "get_ipython().run_line_magic('load_ext', 'redengine_nb')" in code
    assert code.rstrip().endswith("x = 1")


class FakeTask:
    def __init__(self) -> None:
        self.disabled = False
        self.force_run = False
        self.terminated = False

    def terminate(self) -> None:
        self.terminated = True


class FakeSession(dict[str, FakeTask]):
    def delete_task(self, name: str) -> None:
        del self[name]


def _run(source: str, shell: HeadlessShell) -> dict[str, Any]:
    ns: dict[str, Any] = {"get_ipython": lambda: shell}
    exec(compile(to_python(source), "<cell>", "exec"), ns)
    return ns


def test_headless_shell_skips_views_and_applies_task_changes() -> None:
    session = FakeSession(a=FakeTask(), b=FakeTask(), c=FakeTask())
    skipped: list[str] = []
    shell = HeadlessShell(session, on_skip=skipped.append)
    _run(
        "%load_ext redengine_nb\n%tasks\n%scheduler stop\n%task log a\n"
        "%task disable a\n%task run b\n%task delete c\n",
        shell,
    )
    assert skipped == ["%load_ext redengine_nb", "%tasks", "%scheduler stop", "%task log a"]
    assert session["a"].disabled and session["b"].force_run
    assert "c" not in session


def test_headless_shell_runs_shell_escapes(tmp_path: Path) -> None:
    shell = HeadlessShell(FakeSession())
    target = tmp_path / "made.txt"
    ns = _run(f"!echo made > '{target}'\nlines = !echo one; echo two\n", shell)
    assert target.read_text().strip() == "made"
    assert ns["lines"] == ["one", "two"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("%matplotlib inline", "%matplotlib: this line magic is not available headless"),
        ("%load_ext autoreload", "extensions other than redengine_nb"),
        ("%%timeit\nx = 1", "cell magics other than %%task"),
        ("%task frobnicate a", "expected %task run|disable"),
    ],
)
def test_headless_shell_refuses_what_it_cannot_do(source: str, message: str) -> None:
    with pytest.raises(NotebookError, match=message) as info:
        _run(source, HeadlessShell(FakeSession(a=FakeTask())))
    if "magic" in message:
        assert SKIP_TAG in str(info.value)
