"""What a run calls, at module level so that a process run pickles it by reference: a
function imported from a file per run, and Python source text run as a cell is."""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import TaskSetupError
from ..executors.tracebacks import remember_source

__all__ = ["call_from_path", "resolve_path", "run_code", "top_level_names"]


def resolve_path(path: str) -> Path:
    file = Path(path).expanduser()
    if file.is_dir():
        init = file / "__init__.py"
        if init.is_file():
            return init
        raise TaskSetupError(
            f"path {path!r} is a folder without __init__.py; "
            "give the .py file that defines the function"
        )
    if not file.is_file():
        raise TaskSetupError(
            f"path {path!r} does not exist (looked in {os.getcwd()!r}); "
            "give the .py file that defines the function"
        )
    return file


def top_level_names(file: Path) -> set[str]:
    """Names a module defines at top level (cheap: parsed, not executed)."""
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"), str(file))
    except SyntaxError as exc:
        raise TaskSetupError(f"{str(file)!r} does not compile: {exc}") from None
    except OSError as exc:
        raise TaskSetupError(f"cannot read {str(file)!r}: {exc}") from None
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def call_from_path(path: str, func_name: str, kwargs: dict[str, Any]) -> Any:
    """Import ``path`` afresh and call its ``func_name`` with ``kwargs``."""
    file = resolve_path(path)
    import hashlib  # here: it loads OpenSSL (~3.5 MiB), and only path tasks need it

    digest = hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:12]
    module_name = f"_redengine_nb_task_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise TaskSetupError(f"cannot import {str(file)!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    func = getattr(module, func_name, None)
    if func is None or not callable(func):
        raise TaskSetupError(f"{str(file)!r} has no function {func_name!r}")
    return func(**kwargs)


def run_code(code: str, name: str, kwargs: dict[str, Any], namespace: dict[str, Any] | None) -> Any:
    """Execute source text; the value of a final expression statement is returned."""
    ns: dict[str, Any] = namespace if namespace is not None else {"__name__": "__task__"}
    ns.update(kwargs)
    remember_source(f"<task {name}>", code)  # tracebacks show the cell's lines
    tree = ast.parse(code, f"<task {name}>", "exec")
    last: ast.expr | None = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body.pop().value  # type: ignore[attr-defined]
    exec(compile(tree, f"<task {name}>", "exec"), ns)
    if last is not None:
        return eval(compile(ast.Expression(last), f"<task {name}>", "eval"), ns)
    return None
