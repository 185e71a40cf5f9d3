"""The session's lease on its run log: who this scheduler is, and proof that it lives.

A :class:`LeaseKeeper` is owned by the session. It takes a lease in the run log the first
time the session needs an owner for a run (the first claim, or the runner's start), renews
it at its heartbeat -- a step at most ``lease_ttl / 3`` after the last renewal; the runner
wakes for it, and never for anything else while idle -- and releases it at a clean stop.
At start and at each heartbeat it reaps: the open runs of expired leases become ``crash``
(:meth:`~redengine_nb.runlog.base.RunLogBase.reap_expired`).

A scheduler on *this* host that died (kill -9, a power cut of the container) leaves its
lease until the lease expires. When its process is visibly gone -- the lease's ``info``
holds its ``host:pid:start`` token (:mod:`redengine_nb.runlog.owner`), and no process with
that pid and start time exists -- the keeper deletes the lease at once, so that a restart
sees the dead scheduler's runs as ``crash`` without waiting ``lease_ttl``. Before that
the session ends the process children such a scheduler left alive
(:func:`~redengine_nb.executors.orphans.sweep_orphans`): a run is never marked ``crash``
while its child still works.

Runs written before leases existed carry a ``host:pid:start`` owner; they are judged by
:func:`~redengine_nb.runlog.owner.owner_alive` as before.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

from ..runlog.base import LeaseLost, RunLogBase, is_lease_id
from ..runlog.owner import current_owner, owner_alive

__all__ = ["LeaseKeeper"]

log = logging.getLogger("redengine_nb.session")


class LeaseKeeper:
    """Holds one scheduler's lease on ``runlog`` (``clock``: the scheduler's time source,
    ``ttl``: a callable giving the lease lifetime in seconds, read at every renewal)."""

    def __init__(
        self,
        runlog: RunLogBase,
        time: Callable[[], float],
        ttl: Callable[[], float],
    ) -> None:
        self.runlog = runlog
        self._time = time
        self._ttl = ttl
        self.lease_id: str | None = None
        #: Every lease this keeper has held (the owners of the runs its session started).
        self.held: set[str] = set()
        self.next_beat: float | None = None
        self.lost = False

    @property
    def owner(self) -> str:
        """The lease id, taking the lease first if this scheduler has none."""
        if self.lease_id is None:
            self.acquire()
        assert self.lease_id is not None
        return self.lease_id

    def acquire(self) -> str:
        now = self._time()
        ttl = self._ttl()
        self.lease_id = self.runlog.acquire_lease(
            now=now, ttl=ttl, host=socket.gethostname(), pid=os.getpid(), info=current_owner()
        )
        self.lost = False
        self.next_beat = now + ttl / 3
        self.held.add(self.lease_id)
        return self.lease_id

    def seconds_until_beat(self) -> float | None:
        if self.lease_id is None or self.next_beat is None:
            return None
        return max(0.0, self.next_beat - self._time())

    def beat(self, now: float | None = None, *, force: bool = False) -> list[str]:
        """Renew the lease if its heartbeat is due (or ``force``), then reap. Returns the
        run ids marked crash. Raises :class:`LeaseLost` if the lease was reaped meanwhile
        (this scheduler was presumed dead: it must stop)."""
        if self.lease_id is None:
            return []
        if now is None:
            now = self._time()
        if not force and self.next_beat is not None and now < self.next_beat:
            return []
        ttl = self._ttl()
        if not self.runlog.renew_lease(self.lease_id, now=now, ttl=ttl):
            self.lost = True
            lease, self.lease_id = self.lease_id, None
            raise LeaseLost(
                f"run log {self.runlog.location!r}: this scheduler's lease {lease} was gone at "
                "its heartbeat: another scheduler found it expired (this process stalled for "
                "longer than lease_ttl, or its clock jumped) and marked its runs crash. It "
                "stops so as not to start runs twice."
            )
        self.next_beat = now + ttl / 3
        return self.reap(now)

    def reap(self, now: float | None = None) -> list[str]:
        """Delete the leases of this host's dead schedulers, then reap expired leases."""
        if now is None:
            now = self._time()
        host = socket.gethostname()
        for lease in self.runlog.leases(now):
            if lease.lease_id == self.lease_id or lease.host != host:
                continue
            if lease.info and not owner_alive(lease.info):
                self.runlog.release_lease(lease.lease_id)
        crashed = self.runlog.reap_expired(now=now)
        if crashed:
            log.warning(
                "marked %d run(s) of a scheduler that stopped renewing its lease as crash",
                len(crashed),
            )
        return crashed

    def release(self) -> None:
        """A clean stop: delete the lease (its runs were ended or are reaped as crash)."""
        lease, self.lease_id = self.lease_id, None
        self.next_beat = None
        if lease is not None and not self.lost:
            try:
                self.runlog.release_lease(lease)
            except Exception:
                log.exception("could not release the lease %s", lease)

    def is_mine(self, owner: str | None) -> bool:
        return owner is not None and owner == self.lease_id

    @staticmethod
    def legacy(owner: str | None) -> bool:
        """A run written before leases (owner ``host:pid:start``), judged by the pid."""
        return not is_lease_id(owner)


__all__ += ["LeaseLost"]
