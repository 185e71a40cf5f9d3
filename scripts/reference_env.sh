#!/usr/bin/env bash
# Build the reference environment: Red Engine 2.0.1 and Rocketry 2.5.1 in a virtual
# environment of their own (.reference-venv/, gitignored). They pin pydantic 1 and pandas 1,
# which the project's environment must not. The differential test of the condition language
# (tests/conditions/test_reference.py) runs its oracle with this interpreter; it calls this
# script when the environment is missing, and scripts/test.sh builds it before the suite.
#
#   bash scripts/reference_env.sh              # create it (a no-op when it is complete)
#   PYTHON=python3.11 bash scripts/reference_env.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${REFERENCE_VENV:-$root/.reference-venv}"
python="${PYTHON:-python3}"
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9  # two test processes asking at once build it once
if [ -f "$venv/.complete" ]; then
    exit 0
fi
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check \
    'redengine==2.0.1' 'rocketry==2.5.1' 'pydantic>=1.10,<2' 'pandas>=1.5,<2' 'numpy<2'
"$venv/bin/python" -c "from importlib.metadata import version as v; \
print('reference env: redengine', v('redengine'), 'rocketry', v('rocketry'), 'pandas', v('pandas'))"
touch "$venv/.complete"
