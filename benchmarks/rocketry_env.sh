#!/usr/bin/env bash
# Create benchmarks/.rocketry-venv: Rocketry 2.5 needs pydantic<2, which the project's own
# environment must not pin, so it lives in a virtual environment of its own. compare.py runs
# the Rocketry scenarios with this interpreter when it exists.
#
#   bash benchmarks/rocketry_env.sh            # create (or update) it
#   PYTHON=python3.12 bash benchmarks/rocketry_env.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.rocketry-venv"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q 'rocketry==2.5.*' 'pydantic<2' 'psutil>=5.9'
"$venv/bin/python" -c "from importlib.metadata import version as v; print('rocketry', v('rocketry'), 'pydantic', v('pydantic'))"
