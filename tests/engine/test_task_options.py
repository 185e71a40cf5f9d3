"""The keywords of ``app.task`` / ``session.create_task`` and their checks, in one home."""

from __future__ import annotations

import pytest

from redengine_nb import RedEngine, TaskSetupError


def noop() -> None:
    return None


def test_an_unknown_keyword_is_named_with_a_suggestion(app: RedEngine) -> None:
    with pytest.raises(TypeError, match=r"'nmae'; did you mean 'name'\?"):
        app.task("daily", func=noop, nmae="x")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'prio'"):
        app.task("daily", prio=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'nmae'"):
        app.session.create_task("daily", func=noop, nmae="x")  # type: ignore[call-arg]
    assert len(app.session) == 0


def test_func_name_without_path_fails_at_the_decorator_and_in_create_task(app: RedEngine) -> None:
    with pytest.raises(TaskSetupError, match="func_name= goes with path="):
        app.task("daily", func_name="main")
    with pytest.raises(TaskSetupError, match="func_name= goes with path="):
        app.session.create_task("daily", func=noop, func_name="main")


def test_the_decorator_passes_every_option_on(app: RedEngine) -> None:
    @app.task("daily", name="job", execution="main", priority=3, disabled=True, timeout=5)
    def job() -> None:
        return None

    task = app.session["job"]
    assert (task.execution, task.priority, task.disabled, task.timeout) == ("main", 3, True, 5.0)
    assert job() is None  # the function comes back unchanged


def test_two_things_to_call_are_refused(app: RedEngine) -> None:
    with pytest.raises(TaskSetupError, match=r"exactly one of .* got func, command"):
        app.task("daily", func=noop, command="true")
