"""Fixtures of the CLI tests (helpers live in cli_helpers.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from cli_helpers import Cell, notebook_json


@pytest.fixture
def write_nb(tmp_path: Path) -> Callable[..., Path]:
    def write(cells: Sequence[Cell], name: str = "nb.ipynb") -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(notebook_json(cells), indent=1), encoding="utf-8")
        return path

    return write
