"""The CLI in-process: serve's setup and errors, status and log over a run log, --help."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from redengine_nb.cli import main, parse_config_pairs
from redengine_nb.records import Action
from redengine_nb.runlog import SQLiteRunLog
from redengine_nb.runlog.owner import current_owner

Writer = Callable[..., Path]


def _succeeded(out: str) -> list[str]:
    """Task names of the progress lines (``<date> <time>  task  success  runtime``)."""
    return [
        line.split()[2]
        for line in out.splitlines()
        if re.match(r"\d{4}-\d\d-\d\d ", line) and line.split()[3] == "success"
    ]


def test_config_pairs_are_typed() -> None:
    assert parse_config_pairs(
        ["max_process_count=2", "instant_shutdown=true", "timeout=30 minutes", "x=off", "y=1.5"]
    ) == {
        "max_process_count": 2,
        "instant_shutdown": True,
        "timeout": "30 minutes",
        "x": False,
        "y": 1.5,
    }


@pytest.mark.parametrize("command", [[], ["serve"], ["status"], ["log"]])
def test_help_everywhere(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert "usage: redengine-nb" in capsys.readouterr().out


def _log_with_runs(path: Path) -> None:
    log = SQLiteRunLog(path)
    now = time.time()
    owner = current_owner()
    ok = log.start_run("fetch", created=now - 10, start=now - 10, owner=owner)
    log.finish_run(ok.run_id, Action.SUCCESS, end=now - 9, output="fetched 3 rows\n")
    bad = log.start_run("fetch", created=now - 5, start=now - 5, owner=owner)
    log.finish_run(
        bad.run_id,
        Action.FAIL,
        end=now - 4.5,
        exc_text="Traceback (most recent call last):\nValueError: no rows\n",
    )
    log.start_run("report", created=now - 1, start=now - 1, owner=owner)
    log.close()


def test_status_prints_one_row_per_task_of_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    _log_with_runs(db)
    assert main(["status", "--logs", str(db)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[3:]}
    assert set(rows) == {"fetch", "report"}
    assert rows["fetch"][1] == "fail"
    assert rows["fetch"][-2:] == ["2", "1"]  # runs, fails
    assert rows["report"][1] == "running"
    assert "schedulers (leases)" not in out  # no scheduler holds a lease on this log


def test_status_names_the_schedulers_that_hold_a_lease(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    _log_with_runs(db)
    with SQLiteRunLog(db) as log:
        log.acquire_lease(now=time.time(), ttl=30.0, host="box", pid=4242)
        log.acquire_lease(now=time.time() - 100, ttl=30.0, host="old", pid=7)
    assert main(["status", "--logs", str(db)]) == 0
    fleet = capsys.readouterr().out.split("schedulers (leases):", 1)[1].splitlines()[3:]
    assert len(fleet) == 2
    assert "old:7" in fleet[0] and "expired" in fleet[0]
    assert "box:4242" in fleet[1] and "alive" in fleet[1]


def test_log_prints_runs_with_output_and_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    _log_with_runs(db)
    assert main(["log", "fetch", "--logs", str(db), "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert "the last 1 run(s)" in out
    assert ": fail," in out and "ValueError: no rows" in out
    assert "fetched 3 rows" not in out  # only the newest run
    assert main(["log", "fetch", "--logs", str(db)]) == 0
    assert "    | fetched 3 rows" in capsys.readouterr().out


def test_log_of_an_unknown_task_suggests_a_close_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    _log_with_runs(db)
    assert main(["log", "fetc", "--logs", str(db)]) == 1
    err = capsys.readouterr().err
    assert "no runs of task 'fetc'" in err and "did you mean 'fetch'" in err


def test_status_without_a_log_says_where_it_looked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["status"]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "redengine_nb.db") in err and "(the default" in err
    assert not (tmp_path / "redengine_nb.db").exists()


# -- serve, in this process -----------------------------------------------------------------


def test_serve_runs_setup_registers_cells_and_stops_when_a_task_says_so(
    write_nb: Writer, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    nb = write_nb(
        [
            "%load_ext redengine_nb",
            "from redengine_nb.notebook import get_app\n"
            "assert get_app() is app\n"
            "values = []\n"
            "!echo shell-escape-ran",
            ("values.append('must not run headless')", ["skip-serve"]),
            "%%task every 1 hour --name first\nvalues.append('first')",
            "%%task after task 'first' --name second\nprint(values)\napp.session.shut_down()",
            ("%tasks", []),
        ]
    )
    db = tmp_path / "runs.db"
    assert main(["serve", str(nb), "--logs", str(db), "--for", "2 minutes"]) == 0
    out = capfd.readouterr().out
    assert "skipped %load_ext redengine_nb" in out and "skipped %tasks" in out
    assert "shell-escape-ran" in out
    assert _succeeded(out) == ["first", "second"]
    assert "task    condition" in out  # the status table at the end

    assert main(["log", "second", "--logs", str(db)]) == 0
    assert "    | ['first']" in capfd.readouterr().out  # same namespace, skipped cell left out


def test_serve_uses_the_notebooks_own_log(
    write_nb: Writer,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nb = write_nb(["%%task every 1 hour --name only\nprint('ran')\napp.session.shut_down()"])
    monkeypatch.chdir(tmp_path)
    assert main(["serve", str(nb), "--for", "2 minutes"]) == 0
    own = nb.with_name(nb.stem + ".redengine_nb.db")
    assert own.is_file() and not (tmp_path / "redengine_nb.db").exists()
    capfd.readouterr()
    assert main(["log", "only", "--logs", str(nb)]) == 0  # NOTEBOOK.ipynb: its own log
    assert "ran" in capfd.readouterr().out


def test_serve_a_missing_notebook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", str(tmp_path / "missing.ipynb")]) == 2
    err = capsys.readouterr().err
    assert "missing.ipynb: no such file" in err
    assert not (tmp_path / "redengine_nb.db").exists()


def test_serve_a_json_file_that_is_not_a_notebook(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "settings.json"
    path.write_text('{"theme": "dark"}')
    assert main(["serve", str(path)]) == 2
    assert "settings.json: not a notebook" in capsys.readouterr().err


def test_serve_a_task_cell_with_a_bad_condition_names_the_cell(
    write_nb: Writer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nb = write_nb(["x = 1", "%%task every 1 hour\nprint(1)", "%%task every 5 parsecs\nprint(x)"])
    assert main(["serve", str(nb), "--logs", str(tmp_path / "runs.db")]) == 2
    err = capsys.readouterr().err
    assert f"{nb}, cell 3 (id " in err
    assert "%%task every 5 parsecs" in err
    assert "parsecs" in err.split("%%task every 5 parsecs", 1)[1]  # the parser's own message


def test_serve_a_setup_cell_that_raises_gives_cell_and_traceback(
    write_nb: Writer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nb = write_nb(
        [
            "def load():\n    raise RuntimeError('no such table')",
            "x = 1\nload()",
            "%%task every 1 hour --name never\nprint(x)",
        ]
    )
    db = tmp_path / "runs.db"
    assert main(["serve", str(nb), "--logs", str(db)]) == 1
    err = capsys.readouterr().err
    assert "cell 2 (id " in err and "raised during setup" in err
    assert "Traceback (most recent call last)" in err
    assert "load()" in err and "raise RuntimeError('no such table')" in err  # cell lines
    assert "RuntimeError: no such table" in err
    assert "cli.py" not in err  # serve's own frame is left out
    log = SQLiteRunLog(db)
    assert log.task_names() == []  # nothing ran
    log.close()


@pytest.mark.parametrize(
    ("source", "code", "message"),
    [
        ("x = (", 2, r"cell 1 \(id [0-9a-f]+\) does not compile"),
        ("%matplotlib inline", 2, "cell 1 .*%matplotlib: this line magic is not available"),
        ("%%task daily --colour red\nprint(1)", 2, "unrecognized arguments: --colour red"),
        ("%%task daily\nprint('hi'", 2, r"cell 1 \(id [0-9a-f]+\): %%task daily\n.*not compile"),
    ],
)
def test_serve_other_bad_cells(
    write_nb: Writer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    source: str,
    code: int,
    message: str,
) -> None:
    nb = write_nb([source])
    assert main(["serve", str(nb), "--logs", str(tmp_path / "runs.db")]) == code
    assert re.search(message, capsys.readouterr().err)


def test_serve_bad_config_and_duration(
    write_nb: Writer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nb = write_nb(["x = 1"])
    db = str(tmp_path / "runs.db")
    assert main(["serve", str(nb), "--logs", db, "--config", "task_exection=thread"]) == 2
    err = capsys.readouterr().err
    assert "task_exection" in err and "task_execution" in err
    assert main(["serve", str(nb), "--logs", db, "--config", "noequals"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["serve", str(nb), "--for", "ten minutes"])
    assert info.value.code == 2
    assert "--for" in capsys.readouterr().err


def test_serve_honours_shut_cond_from_the_command_line(
    write_nb: Writer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nb = write_nb(
        ["%%task every 1 hour --name a\nprint('a')", "%%task after task 'a' --name b\nprint('b')"]
    )
    db = tmp_path / "runs.db"
    code = main(
        ["serve", str(nb), "--logs", str(db), "--config", "shut_cond=task 'b' has succeeded"]
    )
    assert code == 0  # no --for, no signal: shut_cond stopped it
    out = capsys.readouterr().out
    assert _succeeded(out) == ["a", "b"]


def test_serve_restarting_recall_stops_and_starts_in_process(
    write_nb: Writer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nb = write_nb(
        [
            "from redengine_nb.args import Session\nlives = []",
            "@app.task('every 1 hour', execution='thread')\n"
            "def once(session=Session()):\n"
            "    lives.append(1)\n"
            "    session.restart()",
            "@app.task(\"after task 'once'\", execution='thread')\n"
            "def finish(session=Session()):\n"
            "    print('restarted' if lives else 'not restarted')\n"
            "    session.shut_down()",
        ]
    )
    db = tmp_path / "runs.db"
    args = ["serve", str(nb), "--logs", str(db), "--for", "2 minutes"]
    assert main([*args, "--config", "restarting=recall"]) == 0
    out = capsys.readouterr().out
    assert _succeeded(out) == ["once", "finish"]
    assert main(["log", "finish", "--logs", str(db)]) == 0
    assert "    | restarted" in capsys.readouterr().out


def test_log_and_serve_lines_escape_terminal_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    with SQLiteRunLog(db) as log:
        now = time.time()
        rec = log.start_run("evil", created=now, start=now, owner="me")
        log.finish_run(
            rec.run_id,
            Action.FAIL,
            end=now + 1,
            output="red \x1b[31mtext\x1b[0m\r\nok\tdone\n",
            exc_text="Traceback\nValueError: \x1b]0;pwned\x07\n",
        )
    assert main(["log", "evil", "--logs", str(db)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert "red \\x1b[31mtext\\x1b[0m\\x0d" in out  # shown, not obeyed
    assert "ok\tdone" in out  # tabs and newlines are kept
    assert main(["status", "--logs", str(db)]) == 0
    assert "\x1b" not in capsys.readouterr().out


def test_status_and_log_read_a_log_they_cannot_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os
    import subprocess

    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "runs.db"
    _log_with_runs(db)
    # A read-only bind mount: even root cannot write there (chmod would not stop root).
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    bound = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(mnt)])
    if bound.returncode != 0:
        pytest.skip("cannot make a read-only bind mount here (root only)")
    try:
        assert not os.access(mnt / "runs.db", os.W_OK)
        assert main(["status", "--logs", str(mnt / "runs.db")]) == 0
        assert "fetch" in capsys.readouterr().out
        assert main(["log", "fetch", "--logs", str(mnt / "runs.db")]) == 0
        assert "fetched 3 rows" in capsys.readouterr().out
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_vacuum_deletes_what_retention_says_and_keeps_open_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    _log_with_runs(db)
    assert main(["vacuum", "--logs", str(db), "--retention", "1 runs"]) == 0
    assert "deleted 1 old run(s)" in capsys.readouterr().out
    with SQLiteRunLog(db) as log:
        assert [r.action for r in log.records(task="fetch")] == [Action.FAIL]
        assert [r.action for r in log.records(task="report")] == [Action.RUN]
    assert main(["vacuum", "--logs", str(db), "--retention", "forever"]) == 2
    assert "--retention" in capsys.readouterr().err
