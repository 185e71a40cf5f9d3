"""Fixtures for every test folder."""

from __future__ import annotations

# The real PostgreSQL server (tests/pg_server.py): pg_server, pg_database, pg_url.
from pg_server import pg_database, pg_server, pg_url  # noqa: F401
