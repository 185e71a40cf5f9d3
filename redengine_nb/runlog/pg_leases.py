"""The PostgreSQL run log's part of the shared-log protocol (see docs/scale-out.md):
leases say which schedulers are alive, claims make each start exactly-once across them.

A claim locks each task's row of ``tasks`` (``FOR UPDATE SKIP LOCKED``: a task another
scheduler is claiming is left to it) and bumps its ``stamp``, so that a scheduler knows
whether anyone else started the task since it last did; only those tasks are re-checked
(see :meth:`PostgresLeases.claim_starts`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from ..records import Action, RunRecord
from .base import LeaseInfo, LeaseLost, new_lease_id, start_times
from .pg_writer import PostgresWriter

__all__ = ["PostgresLeases"]


class PostgresLeases(PostgresWriter):
    """The leases and claims of :class:`~redengine_nb.runlog.postgres.PostgresRunLog`."""

    # -- leases ----------------------------------------------------------------------------
    def acquire_lease(self, *, now: float, ttl: float, host: str, pid: int, info: str = "") -> str:
        """Insert a new lease (a fresh id) for a scheduler starting now; return its id."""
        lease_id = new_lease_id()
        stmt = sa.insert(self._leases).values(
            lease_id=lease_id,
            host=host,
            pid=pid,
            started=now,
            renewed=now,
            expires=now + ttl,
            info=info,
        )
        self._writing("taking a lease", lambda c: c.execute(stmt))
        return lease_id

    def renew_lease(self, lease_id: str, *, now: float, ttl: float) -> bool:
        """Extend the lease; False if it is gone (reaped): the scheduler must stop writing."""
        lc = self._leases.c
        stmt = (
            sa.update(self._leases)
            .where(lc.lease_id == lease_id)
            .values(renewed=now, expires=now + ttl)
            .returning(lc.lease_id)
        )
        return self._writing("renewing a lease", lambda c: c.execute(stmt).first()) is not None

    def release_lease(self, lease_id: str) -> None:
        stmt = sa.delete(self._leases).where(self._leases.c.lease_id == lease_id)
        self._writing("releasing a lease", lambda c: c.execute(stmt))

    def leases(self, now: float) -> list[LeaseInfo]:
        """Every lease in the table, alive and expired (not yet reaped), oldest first."""
        lc = self._leases.c
        stmt = sa.select(
            lc.lease_id, lc.host, lc.pid, lc.started, lc.renewed, lc.expires, lc.info
        ).order_by(lc.started, lc.lease_id)
        rows = self._reading("reading the leases", lambda c: c.execute(stmt).all())
        return [LeaseInfo(*row) for row in rows]

    def reap_expired(self, *, now: float) -> list[str]:
        """In one transaction: delete expired leases and turn the open runs whose owner is
        a lease id without a lease (expired or gone) into ``crash`` (end = now). Runs owned
        by an old ``host:pid`` token are left to the session's own check. Returns the
        crashed run ids."""
        s = f'"{self.schema}"'

        def op(conn: sa.Connection) -> list[tuple[int, str]]:
            conn.execute(sa.delete(self._leases).where(self._leases.c.expires < now))
            rows = conn.execute(
                sa.text(
                    f"UPDATE {s}.runs AS r SET action = 'crash', \"end\" = :now "
                    "WHERE r.action = 'run' AND r.owner LIKE 'L%' "
                    "AND strpos(r.owner, ':') = 0 AND NOT EXISTS ("
                    f"SELECT 1 FROM {s}.leases AS l WHERE l.lease_id = r.owner) "
                    "RETURNING r.run_id, r.task_name"
                ),
                {"now": now},
            ).all()
            return [(int(a), str(b)) for a, b in rows]

        crashed = self._writing("reaping expired leases", op)
        with self._lock:
            for _key, task in crashed:
                self._note(task, Action.CRASH, now)
        return [str(key) for key, _task in crashed]

    def claim_starts(
        self,
        tasks: Sequence[str],
        *,
        created: float,
        start: float | Sequence[float],
        owner: str,
        recheck: Callable[[Sequence[str]], Sequence[str]],
    ) -> list[RunRecord]:
        """Start the runs of ``tasks`` that no other scheduler is starting or has started
        since this one last looked, in one transaction:

        1. the lease ``owner`` is locked (``FOR SHARE``: a reaper waits for this
           transaction) and checked -- gone (reaped) raises :class:`LeaseLost`, nothing
           written (fencing);
        2. each task's row in ``tasks`` is locked, ``FOR UPDATE SKIP LOCKED``: a task that
           another scheduler is claiming right now is left to it;
        3. for the tasks whose ``stamp`` moved since our last claim (another scheduler
           started them), what is cached about them is dropped and ``recheck(names)``
           returns the ones still due against their now current history (other tasks'
           history is as the latest notifications left it); the others need no re-check;
        4. the starts are written. (The stamps of every row locked are bumped in step 2:
           one statement both locks and bumps.)

        Returns the records written (a subset of ``tasks``, in order)."""
        if not tasks:
            return []
        starts = start_times(start, tasks)
        s = f'"{self.schema}"'
        lc = self._leases.c
        tc = self._tasks.c

        def op(conn: sa.Connection) -> tuple[list[RunRecord], dict[str, int]]:
            expires = conn.execute(
                sa.select(lc.expires).where(lc.lease_id == owner).with_for_update(read=True)
            ).scalar()
            if expires is None:
                raise LeaseLost(
                    f"run log {self.location!r}: the lease {owner!r} is gone (it expired "
                    "and another scheduler reaped it, its runs marked crash); this "
                    "scheduler must stop starting runs."
                )
            # An expired lease not reaped yet may still claim: a reaper waits for this
            # transaction (the row lock above) and then crashes what it wrote.
            names = sorted(set(tasks))
            unknown = [n for n in names if n not in self._stamps]
            fresh: Sequence[str] = []
            if unknown:  # make the rows to lock (once per task and process)
                fresh = (
                    conn.execute(
                        pg.insert(self._tasks)
                        .from_select(
                            ["name"],
                            sa.select(sa.func.unnest(sa.bindparam("n", type_=pg.ARRAY(sa.Text)))),
                        )
                        .on_conflict_do_nothing(index_elements=["name"])
                        .returning(tc.name),
                        {"n": unknown},
                    )
                    .scalars()
                    .all()
                )
            # Lock the rows (skipping those another claim holds) and bump their stamps
            # in one statement; a stamp as it was before is the one to compare.
            bumped: dict[str, int] = {
                name: int(stamp)
                for name, stamp in conn.execute(
                    sa.text(
                        f"UPDATE {s}.tasks AS t SET stamp = t.stamp + 1 FROM ("
                        f"SELECT name FROM {s}.tasks WHERE name = ANY(:n) "
                        "ORDER BY name FOR UPDATE SKIP LOCKED) AS l "
                        "WHERE t.name = l.name RETURNING t.name, t.stamp"
                    ),
                    {"n": names},
                ).all()
            }
            known = dict(self._stamps)
            for name in fresh:
                known[name] = 0  # made by us just now: nobody else claimed it
            moved = [n for n in tasks if n in bumped and known.get(n) != bumped[n] - 1]
            keep = {n for n in tasks if n in bumped and known.get(n) == bumped[n] - 1}
            if moved:
                with self._lock:
                    for name in moved:  # read again: their history is current now
                        self._forget(name)
                keep.update(recheck(list(dict.fromkeys(moved))))
            chosen = [(t, at) for t, at in zip(tasks, starts, strict=True) if t in keep]
            records = []
            if chosen:
                records = self._insert_starts(
                    conn, [t for t, _ in chosen], created, [at for _, at in chosen], owner
                )
            return records, bumped

        with self._wlock:
            try:
                records, seen = self._writing(f"claiming {len(tasks)} start(s)", op)
            except BaseException:
                self._stamps.clear()  # what we knew may be wrong now: re-check next time
                raise
            self._stamps.update(seen)
        self._noted(records)
        return records
