"""The PostgreSQL run log's tables: their definition, the URL a store accepts, and
creating or migrating them.

Tables, in their own schema (``redengine_nb`` unless told otherwise, so that they never
meet a user's tables):

- ``runs`` -- one row per run, as in the SQLite store; ``time`` is a stored generated
  column (the end once ended, else the start) so that its index is used by plain
  ``time >= ...`` lookups. ``exc_text`` and ``output`` are ``bytea`` (UTF-8): PostgreSQL
  ``text`` cannot hold a NUL character, and a task's output may;
- ``tasks`` -- one row per task that was ever claimed: the row a claim locks, and a
  ``stamp`` bumped by every claim (see ``pg_leases``);
- ``leases`` -- one row per live scheduler (see ``docs/scale-out.md``);
- ``meta`` -- the schema version; an older schema of ours is migrated when opened, a
  newer one refused, a schema of the same name that is not ours refused untouched.

``runs`` has the indexes of the SQLite store (``(task_name, start)``, ``(task_name,
action, time)``, ``(task_name, created)``, ``(created)``) plus a partial index on the open
runs (``WHERE action = 'run'``) for ``open_runs()`` and reaping; and statement triggers
that ``NOTIFY`` the other schedulers of what each committed write changed.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from ..errors import RunLogError

__all__ = [
    "DDL_LOCK",
    "DEFAULT_SCHEMA",
    "SCHEMA_VERSION",
    "create_schema",
    "migrate",
    "normalize_url",
    "schema_state",
    "tables",
    "text_bytes",
    "text_of",
]

#: The version of the tables this module writes and reads (``meta.schema_version``).
SCHEMA_VERSION = 1
#: The default PostgreSQL schema (namespace) of the tables.
DEFAULT_SCHEMA = "redengine_nb"
# pg_advisory_xact_lock key taken while the tables are created or migrated ('RENB').
DDL_LOCK = 0x52454E42


def tables(schema: str) -> tuple[sa.MetaData, sa.Table, sa.Table, sa.Table, sa.Table]:
    md = sa.MetaData(schema=schema)
    runs = sa.Table(
        "runs",
        md,
        sa.Column("run_id", sa.BigInteger, sa.Identity(start=1), primary_key=True),
        sa.Column("task_name", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("created", sa.Double, nullable=False),
        sa.Column("start", sa.Double),
        sa.Column("end", sa.Double),
        sa.Column(
            "time",
            sa.Double,
            sa.Computed(
                "COALESCE(CASE WHEN action <> 'run' THEN \"end\" END, start, created)",
                persisted=True,
            ),
        ),
        sa.Column("exc_text", sa.LargeBinary),
        sa.Column("output", sa.LargeBinary),
        sa.Column("owner", sa.Text),
    )
    sa.Index("ix_runs_task_start", runs.c.task_name, runs.c.start)
    sa.Index("ix_runs_task_action_time", runs.c.task_name, runs.c.action, runs.c.time)
    sa.Index("ix_runs_task_created", runs.c.task_name, runs.c.created)
    sa.Index("ix_runs_created", runs.c.created)
    sa.Index("ix_runs_open", runs.c.owner, postgresql_where=runs.c.action == "run")
    tasks = sa.Table(
        "tasks",
        md,
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("stamp", sa.BigInteger, nullable=False, server_default="0"),
    )
    leases = sa.Table(
        "leases",
        md,
        sa.Column("lease_id", sa.Text, primary_key=True),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started", sa.Double, nullable=False),
        sa.Column("renewed", sa.Double, nullable=False),
        sa.Column("expires", sa.Double, nullable=False),
        sa.Column("info", sa.Text, nullable=False, server_default=""),
    )
    meta = sa.Table(
        "meta",
        md,
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    return md, runs, tasks, leases, meta


def normalize_url(url: str) -> sa.engine.URL:
    """The SQLAlchemy URL for ``url``, with the psycopg 3 driver; RunLogError if it is not
    a PostgreSQL URL this store can use."""
    try:
        parsed = sa.engine.make_url(url)
    except (sa_exc.ArgumentError, ValueError) as exc:
        raise RunLogError(
            f"logs={url!r} is not a database URL ({exc}); a PostgreSQL run log is "
            "'postgresql+psycopg://user:password@host:port/database'."
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in ("postgresql", "postgres"):
        raise RunLogError(
            f"logs={url!r}: the {backend!r} database is not supported. A shared run log is "
            "PostgreSQL ('postgresql+psycopg://user@host/db'); one machine can use a SQLite "
            "file path or 'sqlite:///path'."
        )
    if driver not in ("", "psycopg"):
        raise RunLogError(
            f"logs={url!r}: the driver {driver!r} is not supported; use psycopg 3 "
            "('postgresql+psycopg://...', installed by the 'postgres' extra)."
        )
    if not parsed.database:
        raise RunLogError(
            f"logs={url!r} names no database; add it after the host: "
            "'postgresql+psycopg://user@host:5432/database'."
        )
    return parsed.set(drivername="postgresql+psycopg")


def text_bytes(value: str | None) -> bytes | None:
    return None if value is None else value.encode("utf-8", "surrogatepass")


def text_of(value: bytes | memoryview | None) -> str | None:
    return None if value is None else bytes(value).decode("utf-8", "surrogatepass")


def schema_state(conn: sa.Connection, schema: str, meta: sa.Table, location: str) -> int | None:
    """Our schema version, ``None`` if there are no tables yet; raise if not ours."""
    found = conn.execute(
        sa.text("SELECT to_regclass(:t), to_regclass(:r)"),
        {"t": f'"{schema}".meta', "r": f'"{schema}".runs'},
    ).one()
    if found[0] is None:
        if found[1] is not None:
            raise RunLogError(
                f"run log {location!r}: the schema {schema!r} holds a 'runs' "
                "table that is not a redengine_nb run log; it was left untouched. "
                "Pass another schema (PostgresRunLog(url, schema=...))."
            )
        return None
    rows = dict(conn.execute(sa.select(meta.c.key, meta.c.value)).all())
    if rows.get("application") != "redengine_nb":
        raise RunLogError(
            f"run log {location!r}: the schema {schema!r} belongs to some "
            "other application; it was left untouched. Pass another schema."
        )
    version = int(rows.get("schema_version", "0"))
    if version > SCHEMA_VERSION:
        raise RunLogError(
            f"run log {location!r} has schema version {version}, newer than this "
            f"redengine_nb understands ({SCHEMA_VERSION}); it was left untouched. "
            "Upgrade redengine_nb on this machine."
        )
    return version


def create_schema(conn: sa.Connection, schema: str, md: sa.MetaData, meta: sa.Table) -> None:
    """The schema, its tables and triggers, and the ``meta`` rows (one transaction)."""
    s = f'"{schema}"'
    conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {s}"))
    md.create_all(conn)
    # What changed, sent to the listeners of other schedulers at commit: the writer's
    # application_name on the first line, then one JSON line per written row:
    # [task, action, time, start] -- enough to keep their last() caches true without
    # a query. Split in several notifications below the 8000-byte payload limit. A
    # delete (retention) sends '*': drop every cache.
    channel = schema
    conn.execute(
        sa.text(
            f"CREATE OR REPLACE FUNCTION {s}.notify_rows() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ DECLARE "
            "me text := current_setting('application_name'); part text; "
            "BEGIN "
            "FOR part IN SELECT string_agg(item, '') FROM ("
            " SELECT item, sum(octet_length(item)) OVER (ORDER BY n) / 7000 AS chunk"
            " FROM (SELECT row_number() OVER () AS n, E'\\n' || json_build_array("
            " task_name, action, time, start)::text AS item FROM new_rows) AS rows"
            ") AS sized GROUP BY chunk LOOP "
            f"PERFORM pg_notify('{channel}', me || part); "
            "END LOOP; RETURN NULL; END $$"
        )
    )
    conn.execute(
        sa.text(
            f"CREATE OR REPLACE FUNCTION {s}.notify_all() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            f"PERFORM pg_notify('{channel}', current_setting('application_name') "
            "|| E'\\n*'); RETURN NULL; END $$"
        )
    )
    for event in ("INSERT", "UPDATE"):
        conn.execute(
            sa.text(
                f"CREATE TRIGGER runs_{event.lower()}_notify AFTER {event} ON {s}.runs "
                "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
                f"EXECUTE FUNCTION {s}.notify_rows()"
            )
        )
    conn.execute(
        sa.text(
            f"CREATE TRIGGER runs_delete_notify AFTER DELETE OR TRUNCATE ON {s}.runs "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {s}.notify_all()"
        )
    )
    conn.execute(
        sa.insert(meta),
        [
            {"key": "application", "value": "redengine_nb"},
            {"key": "schema_version", "value": str(SCHEMA_VERSION)},
        ],
    )


def migrate(conn: sa.Connection, meta: sa.Table, found: int) -> None:
    """Bring an older schema of ours to ``SCHEMA_VERSION`` (one transaction). There is
    one version so far; a later one adds its steps here."""
    conn.execute(
        sa.update(meta).where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION))
    )
