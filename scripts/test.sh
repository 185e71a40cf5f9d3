#!/usr/bin/env bash
# Install everything the test suite needs and run it: the README's test command.
# Debian's Chromium (for the panel's browser test) when we can install it, a virtual
# environment in .venv with the project and its test extras, then ruff, mypy and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,bench]'

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# The differential test of the condition language runs Red Engine and Rocketry in a side
# environment (.reference-venv); without it (no package index) that test is skipped, saying so.
bash scripts/reference_env.sh || echo "scripts/test.sh: the reference environment was not built" >&2
.venv/bin/python -m pytest "$@"
