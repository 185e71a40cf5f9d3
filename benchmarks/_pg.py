"""A PostgreSQL server for the benchmarks: the one at ``--url``, or a temporary one
started from Debian's binaries as the tests do (tests/pg_server.py) and stopped after."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


@contextlib.contextmanager
def server(url: str | None) -> Iterator[str]:
    """``url``, or a temporary server's URL (the server stopped when the block ends)."""
    if url:
        yield url
        return
    from pg_server import started_server

    pg = started_server()
    try:
        yield pg.url()
    finally:
        pg.destroy()
