"""The README's first two commands, run as written from a fresh copy of the project.

Slow: the first creates a virtual environment, installs the project (pip's own index and
cache, as configured on the machine) and serves the ETL demo for the time the README says;
the second runs ``scripts/test.sh`` in that copy. Measured on a 2-core machine with a warm
pip cache: the first about 35 s plus the serve time, the second about a minute plus the
tests it runs.

The second command is given one small test file: the outer run (this one) is the full
suite, and running it again inside itself would double CI's time. It still goes through
everything the command does (its venv, the test extras, ruff, mypy, pytest).
``REDENGINE_NB_README_TEST`` marks the inner run so that this file does not recurse.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
NESTED = "REDENGINE_NB_README_TEST"
INNER_TESTS = "tests/test_timetext.py"

if os.environ.get(NESTED):
    pytest.skip("inside the README's own test command", allow_module_level=True)


def readme_commands() -> list[str]:
    """The commands of the README's first ``bash`` block (comments and blanks dropped)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```(?:bash|sh|console)\n(.*?)```", text, re.S)
    assert block, "the README starts with a bash block of commands"
    return [
        line.strip()
        for line in block.group(1).splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _project_files() -> list[str]:
    if (REPO / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout.decode()
        return [p for p in listed.split("\0") if p and (REPO / p).is_file()]
    skip = {".venv", ".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
    return [
        str(p.relative_to(REPO))
        for p in REPO.rglob("*")
        if p.is_file() and not skip & set(p.relative_to(REPO).parts)
    ]


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's files (as a fresh clone would have them) in a new folder, no venv."""
    root = tmp_path_factory.mktemp("readme") / "redengine_nb"
    for rel in _project_files():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)
    return root


def _bash(command: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env[NESTED] = "1"
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_the_readme_starts_with_two_commands() -> None:
    first, second = readme_commands()
    assert "redengine-nb serve notebooks/etl-demo.ipynb --for" in first
    assert "pip install" in first
    assert second == "bash scripts/test.sh"


@pytest.mark.timeout(900)
def test_command_one_installs_and_serves_the_demo(fresh_copy: Path) -> None:
    first = readme_commands()[0]
    done = _bash(first, fresh_copy, timeout=850)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    ran = {line.split()[2] for line in out.splitlines() if re.match(r"\d{4}-.*  success ", line)}
    assert {"fetch", "transform", "report"} <= ran, out
    assert re.search(r"^task\s+condition\s+status", out, re.M), out  # the table at the end
    # The notebook's own SQLite run log, beside it.
    assert (fresh_copy / "notebooks" / "etl-demo.redengine_nb.db").is_file()
    assert (fresh_copy / "notebooks" / "etl-demo-data" / "reports" / "latest.md").is_file()


@pytest.mark.timeout(1500)
def test_command_two_installs_and_runs_the_tests(fresh_copy: Path) -> None:
    second = readme_commands()[1]
    done = _bash(f"{second} -q {INNER_TESTS}", fresh_copy, timeout=1450)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert re.search(r"\d+ passed", done.stdout), done.stdout[-2000:]
