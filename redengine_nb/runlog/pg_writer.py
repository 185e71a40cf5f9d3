"""The PostgreSQL run log's writer: every write the store makes, each in one transaction
on the write connection, noted in the ``last()`` cache once it has committed.

Run ends that cannot be written within ``retry_for`` seconds (the server unreachable) are
kept in memory (and answered from the cache) and written when the server is back: the
outcome of a run that ended during an outage is not lost unless this process dies before
then (its runs then become ``crash`` when its lease expires).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql as pg

from ..errors import RunLogError
from ..records import Action, RunRecord
from .base import start_times
from .pg_core import PostgresCore
from .pg_schema import text_bytes

__all__ = ["PostgresWriter"]

log = logging.getLogger("redengine_nb.runlog.postgres")


class PostgresWriter(PostgresCore):
    """The writes of :class:`~redengine_nb.runlog.postgres.PostgresRunLog`."""

    # -- writing ---------------------------------------------------------------------------
    def _insert_starts(
        self,
        conn: sa.Connection,
        tasks: Sequence[str],
        created: float,
        starts: Sequence[float],
        owner: str,
    ) -> list[RunRecord]:
        # One statement for the batch, its rows made in the order given (ORDER BY the
        # ordinality), so that the ids, drawn from the sequence as the rows are made,
        # ascend in that order.
        rows = list(
            conn.execute(
                self._q_insert_starts,
                {"tasks": list(tasks), "starts": list(starts), "created": created, "owner": owner},
            ).all()
        )
        rows.sort(key=lambda row: row[0])
        if [row[1] for row in rows] != list(tasks):  # not expected; then match by task
            by_task: dict[str, list[int]] = {}
            for run_id, task, _start in sorted(rows, key=lambda row: row[0]):
                by_task.setdefault(task, []).append(run_id)
            ids = [by_task[task].pop(0) for task in tasks]
        else:
            ids = [row[0] for row in rows]
        return [
            RunRecord(str(run_id), task, Action.RUN, created, at, owner=owner)
            for run_id, task, at in zip(ids, tasks, starts, strict=True)
        ]

    def _noted(self, records: Sequence[RunRecord]) -> None:
        with self._lock:
            for rec in records:
                self._note(rec.task_name, Action.RUN, rec.start)
                if rec.action is not Action.RUN:
                    self._note(rec.task_name, rec.action, rec.time)

    def start_run(self, task: str, *, created: float, start: float, owner: str) -> RunRecord:
        return self.start_runs([task], created=created, start=start, owner=owner)[0]

    def start_runs(
        self,
        tasks: Sequence[str],
        *,
        created: float,
        start: float | Sequence[float],
        owner: str,
    ) -> list[RunRecord]:
        """Record one started run per name in ``tasks``, in one transaction."""
        if not tasks:
            return []
        starts = start_times(start, tasks)
        doing = f"recording the start of {len(tasks)} run(s) ({tasks[0]!r}, ...)"
        records = self._writing(
            doing, lambda c: self._insert_starts(c, tasks, created, starts, owner)
        )
        self._noted(records)
        return records

    def _close_runs(
        self, conn: sa.Connection, ends: Sequence[tuple[str, Action, float, str | None, str | None]]
    ) -> list[RunRecord | Exception]:
        """Close the open runs of ``ends`` in one statement; the others get their error."""
        out: list[RunRecord | Exception | None] = [None] * len(ends)
        keys: list[int] = []
        rows_in: list[tuple[int, int, str, float, bytes | None, bytes | None]] = []
        seen: set[int] = set()
        for i, (run_id, action, end, exc_text, output) in enumerate(ends):
            try:
                final = Action.final(action)
            except ValueError as exc:
                out[i] = exc
                continue
            try:
                key = int(run_id)
            except (TypeError, ValueError):
                out[i] = KeyError(run_id)
                continue
            if key in seen:
                out[i] = ValueError(f"run {run_id} is ended twice in one batch")
                continue
            seen.add(key)
            keys.append(key)
            rows_in.append((i, key, final.value, end, text_bytes(exc_text), text_bytes(output)))
        s = f'"{self.schema}"'
        cols = 'r.run_id, r.task_name, r.action, r.created, r.start, r."end", '
        cols += "r.exc_text, r.output, r.owner"
        if rows_in:
            found = conn.execute(
                sa.text(
                    f'UPDATE {s}.runs AS r SET action = v.action, "end" = v.e, '
                    "exc_text = v.x, output = v.o FROM unnest(CAST(:ids AS bigint[]), "
                    "CAST(:acts AS text[]), CAST(:ends AS float8[]), CAST(:xs AS bytea[]), "
                    "CAST(:os AS bytea[])) AS v(id, action, e, x, o) "
                    f"WHERE r.run_id = v.id AND r.action = 'run' RETURNING {cols}"
                ),
                {
                    "ids": [row[1] for row in rows_in],
                    "acts": [row[2] for row in rows_in],
                    "ends": [row[3] for row in rows_in],
                    "xs": [row[4] for row in rows_in],
                    "os": [row[5] for row in rows_in],
                },
            ).all()
            done = {int(row[0]): self._record(row) for row in found}
            missing = [row[1] for row in rows_in if row[1] not in done]
            state: dict[int, tuple[str, str]] = {}
            if missing:
                state = {
                    int(k): (t, a)
                    for k, t, a in conn.execute(
                        sa.select(
                            self._runs.c.run_id, self._runs.c.task_name, self._runs.c.action
                        ).where(self._runs.c.run_id.in_(missing))
                    ).all()
                }
            for i, key, *_rest in rows_in:
                if key in done:
                    out[i] = done[key]
                elif key in state:
                    task, act = state[key]
                    out[i] = ValueError(f"run {key} of {task!r} already ended ({act})")
                else:
                    out[i] = KeyError(ends[i][0])
        return [x if x is not None else KeyError("?") for x in out]

    def finish_run(
        self,
        run_id: str,
        action: Action,
        *,
        end: float,
        exc_text: str | None = None,
        output: str | None = None,
    ) -> RunRecord:
        action = Action.final(action)
        [result] = self.finish_runs([(run_id, action, end, exc_text, output)])
        if isinstance(result, Exception):
            raise result
        return result

    def finish_runs(
        self, ends: Sequence[tuple[str, Action, float, str | None, str | None]]
    ) -> list[RunRecord | Exception]:
        """Close many runs in one transaction; per run its record or the error that refused
        it alone. Raises :class:`RunLogError` if the transaction failed."""
        if not ends:
            return []
        results = self._writing(
            f"recording the end of {len(ends)} run(s)", lambda c: self._close_runs(c, ends)
        )
        self._noted([r for r in results if isinstance(r, RunRecord)])
        return results

    def end_runs(
        self, ends: Sequence[tuple[str, str, Action, float, str | None, str | None]]
    ) -> list[Exception | None]:
        """:meth:`finish_runs` for the session's end writer: ``(task, run_id, action, end,
        exc_text, output)``. If the server stays unreachable for ``retry_for`` seconds the
        ends are kept in memory, answered from the cache, and written with the next
        successful write or :meth:`refresh` (each is then ``None`` here: accepted)."""
        if not ends:
            return []
        batch = list(ends)
        with self._wlock:
            held = self._pending
            self._pending = []
            try:
                results = self.finish_runs([e[1:] for e in held + batch])
            except RunLogError as exc:
                if not self._unreachable(exc):
                    self._pending = held
                    raise
                self._pending = held + batch
                with self._lock:
                    for task, _id, action, end, _x, _o in batch:
                        self._note(task, Action.final(action), end)
                log.warning(
                    "run log %s unreachable: %d run end(s) kept in memory, written when it is back",
                    self.location,
                    len(self._pending),
                )
                return [None] * len(batch)
        for (task, run_id, *_), result in zip(held, results, strict=False):
            if isinstance(result, Exception):
                log.warning("kept end of run %s of %r not written: %s", run_id, task, result)
        return [r if isinstance(r, Exception) else None for r in results[len(held) :]]

    @staticmethod
    def _unreachable(exc: RunLogError) -> bool:
        cause = exc.__cause__
        return isinstance(cause, sa_exc.DBAPIError) and (
            cause.connection_invalidated or isinstance(cause, sa_exc.OperationalError)
        )

    @property
    def pending_ends(self) -> int:
        """Run ends accepted while the server was unreachable and not written yet."""
        return len(self._pending)

    def _flush_pending(self) -> None:
        if self._pending and self._wlock.acquire(blocking=False):
            try:
                if self._pending:
                    held, self._pending = self._pending, []
                    try:
                        results = self.finish_runs([e[1:] for e in held])
                    except RunLogError as exc:
                        self._pending = held + self._pending
                        if not self._unreachable(exc):
                            raise
                        return
                    for (task, run_id, *_), result in zip(held, results, strict=True):
                        if isinstance(result, Exception):
                            log.warning(
                                "kept end of run %s of %r not written: %s", run_id, task, result
                            )
            finally:
                self._wlock.release()

    def log_run(self, record: RunRecord) -> RunRecord:
        """Append ``record``; it keeps its ``run_id`` if that is a free integer, else gets
        a new one (set on the record, which is returned)."""
        wanted = int(record.run_id) if record.run_id and record.run_id.isdigit() else None
        values = {
            "task_name": record.task_name,
            "action": record.action.value,
            "created": record.created,
            "start": record.start,
            "end": record.end,
            "exc_text": text_bytes(record.exc_text),
            "output": text_bytes(record.output),
            "owner": record.owner,
        }
        r = self._runs.c
        seq = f"pg_get_serial_sequence('\"{self.schema}\".runs', 'run_id')"

        def op(conn: sa.Connection) -> int:
            if wanted is not None:
                got = conn.execute(
                    pg.insert(self._runs)
                    .values(run_id=wanted, **values)
                    .on_conflict_do_nothing(index_elements=["run_id"])
                    .returning(r.run_id)
                ).scalar()
                if got is not None:
                    # Later ids from the sequence must pass the one kept.
                    conn.execute(
                        sa.text(
                            f"SELECT setval({seq}, :k) WHERE :k >= "
                            f"(SELECT last_value FROM {self._sequence(conn)})"
                        ),
                        {"k": wanted},
                    )
                    return int(got)
            return int(
                conn.execute(
                    sa.insert(self._runs).values(**values).returning(r.run_id)
                ).scalar_one()
            )

        record.run_id = str(self._writing(f"recording a run of {record.task_name!r}", op))
        self._noted([record])
        return record

    def _sequence(self, conn: sa.Connection) -> str:
        name = conn.execute(
            sa.text("SELECT pg_get_serial_sequence(:t, 'run_id')"),
            {"t": f'"{self.schema}".runs'},
        ).scalar_one()
        return str(name)

    def mark_crashed(self, run_ids: Iterable[str], *, end: float) -> int:
        keys = [int(x) for x in run_ids if str(x).isdigit()]
        if not keys:
            return 0
        r = self._runs.c
        stmt = (
            sa.update(self._runs)
            .where(r.run_id.in_(keys), r.action == "run")
            .values(action="crash", end=end)
            .returning(r.task_name)
        )
        tasks = self._writing("marking crashed runs", lambda c: c.execute(stmt).scalars().all())
        with self._lock:
            for task in set(tasks):
                self._note(task, Action.CRASH, end)
        return len(tasks)

    # -- upkeep ------------------------------------------------------------------------------
    def prune(self, *, before: float | None = None, keep: int | None = None) -> int:
        """Delete ended records whose time is older than ``before`` and, per task, all but
        the newest ``keep`` ended ones; open runs are never deleted. Returns how many.
        (The other schedulers' caches are dropped through the delete's notification.)"""
        if before is None and keep is None:
            return 0
        s = f'"{self.schema}"'
        where = ["action <> 'run'"]
        params: dict[str, Any] = {}
        if before is not None:
            where.append("time < :before")
            params["before"] = before
        sql = f"DELETE FROM {s}.runs WHERE " + " AND ".join(where)
        if keep is not None:
            params["keep"] = max(0, int(keep))
            surplus = (
                f"SELECT run_id FROM (SELECT run_id, row_number() OVER (PARTITION BY "
                f"task_name ORDER BY time DESC, run_id DESC) AS n FROM {s}.runs "
                "WHERE action <> 'run') AS ranked WHERE n > :keep"
            )
            if before is not None:
                sql = f"{sql} OR (run_id IN ({surplus}))"
            else:
                sql = f"DELETE FROM {s}.runs WHERE run_id IN ({surplus})"
        done = self._writing("pruning old records", lambda c: c.execute(sa.text(sql), params))
        with self._lock:
            self._clear_cache()
        return int(done.rowcount)

    def vacuum(self) -> None:
        """``VACUUM ANALYZE`` the runs table: the space of deleted rows is reused (the
        server's autovacuum does this too; a role that does not own the table gets a
        warning from the server and nothing done)."""
        s = f'"{self.schema}"'
        self._reading("vacuuming", lambda c: c.execute(sa.text(f"VACUUM ANALYZE {s}.runs")))
