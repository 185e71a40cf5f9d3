"""The multiprocessing internal the process executor patches, pinned (issue 18.6).

:class:`~redengine_nb.executors.process.ProcessExecutor` starts its children without
re-importing the parent's main module by removing two entries, ``init_main_from_path``
(``python script.py``) and ``init_main_from_name`` (``python -m module``), from what
``multiprocessing.spawn.get_preparation_data`` prepares for a child (see
``_skip_main_in_children``). Both are CPython internals: should a version rename them or
stop reading them in ``spawn.prepare``, the patch would silently do nothing and every
process task would run the parent's main module again. These tests fail on any Python
CI runs where that happens, and say so with the version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUARD = 60
WHERE = (
    f"Python {sys.version.split()[0]}: multiprocessing.spawn's preparation data changed; "
    "redengine_nb.executors.process_mp._skip_main_in_children must be updated, else process "
    "task children re-import the parent's main module"
)

#: How each mode of starting a program names its main module to a spawned child.
MAIN_KEY = {"script": "init_main_from_path", "module": "init_main_from_name"}

PROBE = """
import inspect
import json
import multiprocessing.spawn as spawn

from redengine_nb.executors import process_mp

ours = process_mp._CHILD_NAME_PREFIX + "probe"
before = spawn.get_preparation_data(ours)
process_mp._skip_main_in_children()
print(json.dumps({
    "before": sorted(before),
    "ours": sorted(spawn.get_preparation_data(ours)),
    "others": sorted(spawn.get_preparation_data("a process of someone else")),
    "prepare": inspect.getsource(spawn.prepare),
}))
"""

UNGUARDED = """
import os
import threading

from redengine_nb.clock import SystemClock
from redengine_nb.executors.base import RunSpec
from redengine_nb.executors.process import ProcessExecutor

with open(os.environ["MAIN_RUNS"], "a") as marks:  # one line per import of this module
    marks.write(__name__ + "\\n")

done = threading.Event()
outcomes = []
executor = ProcessExecutor(1, SystemClock("UTC"))


def task():
    return "child ok"


executor.start(RunSpec("t", "r", task), lambda o: (outcomes.append(o), done.set()))
assert done.wait(30)
executor.shutdown(terminate=False)
print("outcome", outcomes[0].action.value, outcomes[0].return_value, flush=True)
"""


def _run(mode: str, module: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``tmp_path/<module>.py`` as a script or with ``-m``, from ``tmp_path``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MAIN_RUNS": str(tmp_path / "main_runs")}
    how = [f"{module}.py"] if mode == "script" else ["-m", module]
    return subprocess.run(
        [sys.executable, *how],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=GUARD,
        check=False,
    )


@pytest.mark.parametrize("mode", ["script", "module"])
def test_the_preparation_data_names_the_main_module_as_the_patch_expects(
    mode: str, tmp_path: Path
) -> None:
    (tmp_path / "probe.py").write_text(textwrap.dedent(PROBE))
    done = _run(mode, "probe", tmp_path)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    key = MAIN_KEY[mode]
    assert key in seen["before"], f"{WHERE}: no {key!r} in {seen['before']}"
    assert key in seen["prepare"], f"{WHERE}: spawn.prepare() no longer reads {key!r}"
    assert key not in seen["ours"], f"{WHERE}: the patch left {key!r} in {seen['ours']}"
    assert set(MAIN_KEY.values()).isdisjoint(seen["ours"]), seen["ours"]
    assert key in seen["others"]  # processes not started by the executor are left alone


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["script", "module"])
def test_a_process_task_does_not_import_the_main_module_again(mode: str, tmp_path: Path) -> None:
    (tmp_path / "unguarded.py").write_text(textwrap.dedent(UNGUARDED))
    done = _run(mode, "unguarded", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["outcome success child ok"], done.stdout + done.stderr
    imports = (tmp_path / "main_runs").read_text().splitlines()
    assert imports == ["__main__"], f"{WHERE}: the main module ran as {imports}"
