#!/usr/bin/env bash
# APScheduler 4 (an alpha: 4.0.0a6 when written) in its own virtual environment, for the
# comparison in pg_scale.py: it needs SQLAlchemy's asyncio side (greenlet), psycopg 3 for
# its event broker, and would clash with the 3.x APScheduler of the bench extra.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .aps4-venv
.aps4-venv/bin/python -m pip install -q --upgrade pip
.aps4-venv/bin/python -m pip install -q --pre 'apscheduler==4.0.0a6' 'sqlalchemy[asyncio]>=2' \
    'psycopg[binary]>=3' sniffio
echo "APScheduler 4 in benchmarks/.aps4-venv"
