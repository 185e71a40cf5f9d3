"""Reading a notebook file for ``redengine-nb serve``: its cells, their tags, ``%%task`` cells.

Pure of IPython at import. IPython syntax inside ordinary cells (``!cmd``, ``%time``,
``%load_ext``) is translated with IPython's own ``TransformerManager`` when IPython is
installed (it is a dependency of ipykernel), and the translated code calls
``get_ipython()``, which headless is a :class:`HeadlessShell`: it knows the project's own
line magics and shell escapes, and refuses anything else with the cell's number.

A cell tagged :data:`SKIP_TAG` (JupyterLab's cell tags, ``metadata.tags``) is not run
headless; neither are markdown and raw cells.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "LOG_SUFFIX",
    "SKIP_TAG",
    "HeadlessShell",
    "NotebookCell",
    "NotebookError",
    "notebook_log_file",
    "read_notebook",
    "split_task_cell",
    "to_python",
]

#: Cells with this tag are skipped by ``redengine-nb serve``.
SKIP_TAG = "skip-serve"

#: A notebook's own run log is ``<notebook stem>`` + this, beside the notebook.
LOG_SUFFIX = ".redengine_nb.db"


def notebook_log_file(notebook: str | Path) -> Path:
    """The run log that belongs to ``notebook``: ``analysis.ipynb`` ->
    ``analysis.redengine_nb.db`` in the same folder. The kernel (``%load_ext``) and
    ``redengine-nb serve NOTEBOOK`` both use it, so a notebook served headless continues
    the history of its interactive use."""
    path = Path(notebook)
    return path.with_name(path.stem + LOG_SUFFIX)


class NotebookError(ValueError):
    """A notebook that cannot be read or a cell that cannot be run headless.

    The message names the file and, where there is one, the cell.
    """


@dataclass(frozen=True, slots=True)
class NotebookCell:
    """One cell of a notebook. ``number`` counts every cell from 1, as a reader sees them."""

    number: int
    cell_type: str
    source: str
    tags: tuple[str, ...] = ()
    cell_id: str | None = None

    @property
    def label(self) -> str:
        """``cell 3`` (with its id when it has one): how errors name the cell."""
        return f"cell {self.number}" + (f" (id {self.cell_id})" if self.cell_id else "")

    @property
    def skipped(self) -> bool:
        """Not run headless: not code, empty, or tagged :data:`SKIP_TAG`."""
        return self.cell_type != "code" or SKIP_TAG in self.tags or not self.source.strip()

    @property
    def task(self) -> tuple[str, str] | None:
        """``(line, body)`` when this is a ``%%task`` cell, else ``None``."""
        return split_task_cell(self.source)


def split_task_cell(source: str) -> tuple[str, str] | None:
    """Split a ``%%task`` cell into its option line and its body, as IPython does.

    Leading blank lines are ignored (IPython drops them too); the magic must then be the
    first line. Returns ``None`` for any other cell.
    """
    lines = source.splitlines(keepends=True)
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return None
    first = lines[0].rstrip("\r\n")
    if first != "%%task" and not first.startswith(("%%task ", "%%task\t")):
        return None
    return first[len("%%task") :].strip(), "".join(lines[1:])


def read_notebook(path: str | Path) -> list[NotebookCell]:
    """Read a ``.ipynb`` file; raise :class:`NotebookError` naming the file and the problem.

    Format 4 (what Jupyter has written since 2015) is read straight from its JSON, checked
    for the fields serve uses; importing nbformat costs seconds at start-up (its schema
    validator), which a service restart would pay every time. Older formats go through
    nbformat's converter.
    """
    file = Path(path)
    if not file.exists():
        raise NotebookError(f"{file}: no such file")
    if file.is_dir():
        raise NotebookError(f"{file}: is a folder, not a notebook file (.ipynb)")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NotebookError(f"{file}: cannot read it ({exc})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookError(
            f"{file}: not a notebook: not JSON (line {exc.lineno}, column {exc.colno}: "
            f"{exc.msg}); expected a Jupyter notebook file (.ipynb)"
        ) from None
    if not isinstance(raw, dict) or "nbformat" not in raw:
        raise NotebookError(
            f"{file}: not a notebook: JSON without an 'nbformat' version; expected a "
            "Jupyter notebook file (.ipynb)"
        )
    if raw.get("nbformat") != 4:
        raw = _convert_with_nbformat(file, text)
    cells = raw.get("cells")
    if not isinstance(cells, list):
        raise NotebookError(f"{file}: not a valid notebook: 'cells' is not a list")
    return [_cell(file, number, cell) for number, cell in enumerate(cells, start=1)]


def _convert_with_nbformat(file: Path, text: str) -> dict[str, Any]:
    import nbformat

    try:
        nb = nbformat.reads(text, as_version=4)  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise NotebookError(f"{file}: not a valid notebook ({exc})") from None
    converted: dict[str, Any] = json.loads(nbformat.writes(nb))  # type: ignore[no-untyped-call]
    return converted


def _cell(file: Path, number: int, cell: Any) -> NotebookCell:
    if not isinstance(cell, dict) or not isinstance(cell.get("cell_type"), str):
        raise NotebookError(f"{file}: not a valid notebook: cell {number} has no cell_type")
    source = cell.get("source", "")
    if isinstance(source, list):
        source = "".join(str(part) for part in source)
    if not isinstance(source, str):
        raise NotebookError(f"{file}: not a valid notebook: cell {number} has a bad source")
    metadata = cell.get("metadata") or {}
    tags = metadata.get("tags") or [] if isinstance(metadata, dict) else []
    cell_id = cell.get("id")
    return NotebookCell(
        number=number,
        cell_type=cell["cell_type"],
        source=source,
        tags=tuple(str(t) for t in tags) if isinstance(tags, list) else (),
        cell_id=str(cell_id) if cell_id else None,
    )


def to_python(source: str) -> str:
    """Plain Python for a cell's source: IPython syntax translated when IPython is present.

    Without IPython a cell that uses ``%`` or ``!`` syntax fails to compile and the error
    names the cell (the caller adds the cell's number).
    """
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return source
    return str(TransformerManager().transform_cell(source))  # type: ignore[no-untyped-call]


def _first_word(line: str) -> tuple[str, str]:
    parts = line.strip().split(None, 1)
    if not parts:
        return "", ""
    return parts[0], parts[1] if len(parts) > 1 else ""


class HeadlessShell:
    """What ``get_ipython()`` returns to a notebook's cells under ``redengine-nb serve``.

    Handled:

    - ``%load_ext`` / ``%reload_ext`` / ``%unload_ext redengine_nb``: skipped (serve has
      already made the app the cells use); other extensions are an error.
    - ``%tasks``, ``%task log|--help``, ``%scheduler ...``: skipped — views and scheduler
      control belong to serve, which starts the scheduler after setup and stops it at the end.
    - ``%task run|disable|enable|delete|terminate NAME``: applied to the served app, as in
      a kernel (a task the notebook disables stays disabled when deployed).
    - ``!cmd`` / ``%system``, ``x = !cmd`` / ``%sx``: run through the shell.
    - ``%env NAME=VALUE``: sets the environment variable; ``%pwd``: the working folder.

    Anything else raises :class:`NotebookError` saying which magic and what to do.
    """

    def __init__(
        self,
        session: Any,
        *,
        on_skip: Callable[[str], None] | None = None,
    ) -> None:
        self._session = session
        self._on_skip = on_skip or (lambda _msg: None)
        self.user_ns: dict[str, Any] = {}
        self.current_cell = ""

    # IPython's translated code calls these ------------------------------------------
    def run_line_magic(self, magic_name: str, line: str, _stack_depth: int = 1) -> Any:
        name = magic_name
        if name in ("load_ext", "reload_ext", "unload_ext"):
            module = line.strip()
            if module.split(".")[0] == "redengine_nb":
                self._on_skip(f"%{name} {module}")
                return None
            raise NotebookError(
                f"%{name} {module}: extensions other than redengine_nb are not loaded by "
                f"redengine-nb serve; import what the cell needs instead, or tag the cell "
                f"'{SKIP_TAG}'"
            )
        if name == "tasks" or name == "scheduler":
            self._on_skip(f"%{name} {line}".rstrip())
            return None
        if name == "task":
            return self._task_magic(line)
        if name == "system":
            return self.system(line)
        if name == "sx":
            return self.getoutput(line)
        if name == "env":
            return self._env(line)
        if name == "pwd":
            return str(Path.cwd())
        raise NotebookError(
            f"%{name}: this line magic is not available headless; remove it or tag the "
            f"cell '{SKIP_TAG}' so that redengine-nb serve skips it"
        )

    def run_cell_magic(self, magic_name: str, line: str, cell: str) -> Any:
        raise NotebookError(
            f"%%{magic_name}: cell magics other than %%task are not available headless; "
            f"tag the cell '{SKIP_TAG}' so that redengine-nb serve skips it"
        )

    def system(self, cmd: str) -> int:
        sys.stdout.flush()
        done = subprocess.run(cmd, shell=True, check=False)
        return done.returncode

    def getoutput(self, cmd: str, split: bool = True, depth: int = 0) -> list[str] | str:
        done = subprocess.run(cmd, shell=True, check=False, capture_output=True, text=True)
        out = done.stdout + done.stderr
        return out.splitlines() if split else out

    # the project's own line magics ---------------------------------------------------
    def _task_magic(self, line: str) -> None:
        verb, rest = _first_word(line)
        if verb in ("", "log", "--help", "-h", "help"):
            self._on_skip(f"%task {line}".rstrip())
            return
        names = shlex.split(rest)
        if verb not in ("run", "disable", "enable", "delete", "terminate") or len(names) != 1:
            raise NotebookError(
                f"%task {line}: expected %task run|disable|enable|delete|terminate NAME"
            )
        task = self._session[names[0]]
        if verb == "run":
            task.force_run = True
        elif verb == "disable":
            task.disabled = True
        elif verb == "enable":
            task.disabled = False
        elif verb == "delete":
            self._session.delete_task(names[0])
        else:
            task.terminate()

    def _env(self, line: str) -> Any:
        text = line.strip()
        if "=" in text:
            key, value = text.split("=", 1)
            os.environ[key.strip()] = value.strip()
            return None
        if " " in text:
            key, value = text.split(None, 1)
            os.environ[key] = value.strip()
            return None
        if text:
            return os.environ.get(text)
        return dict(os.environ)
