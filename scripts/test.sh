#!/usr/bin/env bash
# Install everything the test suite needs and run it: the README's test command.
# Debian's Chromium (for the panel's browser test) and PostgreSQL (the shared run log's
# tests) when we can install them, a virtual
# environment in .venv with the project and its test extras, then ruff, mypy and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL's server binaries (initdb, pg_ctl, postgres) for the shared run log's tests:
# the tests start their own server on a temporary directory; no service is started here.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
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
