"""A ``%%task`` cell's line and condition are read once per registration."""

from __future__ import annotations

from typing import Any

import pytest

from redengine_nb import RedEngine
from redengine_nb.notebook import cells, magics, registration
from redengine_nb.notebook.magics import register_cell_task


@pytest.mark.parametrize("policy", ["replace", "raise"])
def test_registering_a_cell_parses_its_condition_once(
    monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    app = RedEngine({"task_pre_exist": policy}, logs=":memory:")
    ns: dict[str, Any] = {}
    register_cell_task(app, "daily --name job", "a = 1", cell_id="c1", namespace=ns)
    seen: list[object] = []
    parse = app.session.parse_condition

    def counting(value: object) -> Any:
        seen.append(value)
        return parse(value)

    monkeypatch.setattr(app.session, "parse_condition", counting)
    # The same cell again: under 'raise' its task is replaced by delete + add.
    task = register_cell_task(app, "hourly --name job", "a = 2", cell_id="c1", namespace=ns)
    assert str(task.start_cond) == "hourly"
    assert [v for v in seen if isinstance(v, str)] == ["hourly"]


def test_the_magic_hands_over_the_line_it_read(monkeypatch: pytest.MonkeyPatch) -> None:
    app = RedEngine(logs=":memory:")
    calls: list[str] = []
    real = cells.parse_task_line

    def counting(line: str) -> cells.TaskCellOptions:
        calls.append(line)
        return real(line)

    monkeypatch.setattr(magics, "parse_task_line", counting)
    monkeypatch.setattr(registration, "parse_task_line", counting)
    opts = magics.parse_task_line("daily --name job")
    register_cell_task(app, opts, "a = 1", cell_id=None, namespace={})
    assert calls == ["daily --name job"]
    assert "job" in app.session
