"""The layers of docs/architecture.md, held against the code's imports: a module imports
only from its own layer or lower ones (type-only imports included). Read from the source
with ``ast``: nothing is imported to check it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "redengine_nb"

#: Longest prefix wins. 0 time and values, 1 decisions, 2 doing, 3 the notebook,
#: 4 the faces that reach every layer (the package's lazy names, the command line).
LAYERS = {
    "redengine_nb.clock": 0,
    "redengine_nb.errors": 0,
    "redengine_nb.records": 0,
    "redengine_nb.timetext": 0,
    "redengine_nb.testing": 0,
    "redengine_nb.conditions.periods": 0,
    "redengine_nb.conditions": 1,
    "redengine_nb.runlog": 1,
    "redengine_nb.config": 2,
    "redengine_nb.args": 2,
    "redengine_nb.executors": 2,
    "redengine_nb._engine": 2,
    "redengine_nb.app": 2,
    "redengine_nb.notebook": 3,
    "redengine_nb.cli": 4,
    "redengine_nb.__main__": 4,
    "redengine_nb": 4,
}


def layer_of(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """The package's modules ``path`` imports (relative imports resolved)."""
    module = module_name(path)
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                if node.module:
                    found.add(".".join([*base, node.module]))
                else:
                    found.update(".".join([*base, a.name]) for a in node.names)
            elif node.module and node.module.split(".")[0] == "redengine_nb":
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "redengine_nb")
    found.discard(module)
    return found


def test_every_module_has_a_layer() -> None:
    for path in PACKAGE.rglob("*.py"):
        layer_of(module_name(path))  # raises (max of nothing) for a module of no layer


def test_no_import_runs_back_up_a_layer() -> None:
    upward = [
        f"{module_name(path)} (layer {layer_of(module_name(path))}) imports "
        f"{target} (layer {layer_of(target)})"
        for path in sorted(PACKAGE.rglob("*.py"))
        for target in sorted(imports_of(path))
        if layer_of(target) > layer_of(module_name(path))
    ]
    assert upward == []


def test_the_check_sees_imports() -> None:
    # The check above is only as good as imports_of: it must see relative, nested and
    # type-only imports.
    found = imports_of(PACKAGE / "_engine" / "session.py")
    assert {"redengine_nb._engine.step", "redengine_nb.conditions.base"} <= found
    assert "redengine_nb.notebook.cells" in imports_of(PACKAGE / "cli" / "serve.py")
