"""Dask execution: each run is a task on a worker of a Dask cluster.

Config ``dask_address`` names the cluster's scheduler (``'tcp://host:8786'``). Without
one, a ``LocalCluster`` (worker processes sized to this machine) is started at the first
Dask run and closed when the executor shuts down (the scheduler stops).

The parts of one run:

* **Submission** is ``client.submit(..., pure=False)``: Dask's own serialisation
  (cloudpickle) carries the target, so notebook functions and cell code work as they do
  for process runs; what cannot be pickled is a start error naming the part that failed
  (found the same way as for process runs). Arguments are resolved in the scheduler as for
  a process run: ``Return('x')``, ``Arg``, ``Private`` travel as values; ``Session()``,
  ``Task()`` and ``TerminationFlag()`` are refused with the reason (the worker has its own
  memory, and Dask cannot signal a running task).
* **On the worker** the target is called by :func:`run_on_worker`, which uses the very
  function a thread run uses (:func:`~redengine_nb.executors.main.execute`): the run's
  stdout/stderr (what Python code writes through ``sys.stdout``/``sys.stderr``) is captured
  per run, bounded, and a traceback is formatted there, as for a local run. Outcome,
  return value, traceback and output come back together as the task's result.
* **Ends are events**: a coroutine on the client's event loop awaits each future and calls
  ``on_done``; nothing polls and the scheduler thread never waits for the cluster.
  Connecting (or starting the ``LocalCluster``) happens on a thread of its own; runs that
  start meanwhile are submitted once it is up.
* **Terminate and timeout**: the future is cancelled and the run is logged ``terminate``
  at once. A run that has not begun never begins. A run already executing on a worker
  cannot be interrupted by Dask: it goes on until its function returns, and its late
  result is dropped (its ``dask_max_runs`` slot is free at once).
* **A worker that dies** under a run makes it ``fail`` with Dask's reason. The
  ``LocalCluster`` started here does not re-run such a task elsewhere
  (``allowed_failures=0``); for your own cluster that is the scheduler's
  ``distributed.scheduler.allowed-failures`` setting (set it to 0 there).
* **A cluster that cannot be reached** makes the runs waiting for it ``fail`` with the
  address and the reason; the next Dask run tries again. Other executions go on. A
  scheduler lost mid-run fails the runs in flight ("lost the connection ...").

Timeouts are checked by the session against its clock (as for every run); the executor
only acts when told to stop.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import threading
import traceback
import urllib.parse
import urllib.request
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from ..clock import Clock, SystemClock
from ..errors import TaskSetupError
from ..records import Action
from .base import Executor, RunFlag, RunHandle, RunOutcome, RunSpec

__all__ = ["DaskExecutor", "run_on_worker"]

log = logging.getLogger(__name__)

_DASK_WORKER_NAME = "Dask Worker process"  # how a Nanny names the process it starts
_WORKER_CLOCK = SystemClock("UTC")  # only its time() is read: the end comes from the session


def run_on_worker(
    target: Callable[[], Any], task_name: str, output_limit: int
) -> tuple[str, Any, str | None, str | None]:
    """Call ``target`` on a Dask worker as a thread run is called: output captured,
    traceback formatted here. Returns ``(action, return value, exc_text, output)``."""
    from .main import execute

    outcome = execute(RunSpec(task_name, "", target, None, RunFlag(), output_limit), _WORKER_CLOCK)
    return outcome.action.value, outcome.return_value, outcome.exc_text, outcome.output


class _DaskHandle(RunHandle):
    __slots__ = ("_executor", "done", "future", "key", "on_done", "spec")

    def __init__(
        self, executor: DaskExecutor, spec: RunSpec, on_done: Callable[[RunOutcome], None]
    ) -> None:
        self.spec = spec
        self.on_done = on_done
        # Unique on the cluster: schedulers sharing a cluster may number their runs alike
        # (a key seen before would be given the earlier task's result).
        self.key = f"redengine-{spec.task_name}-{spec.run_id}-{uuid.uuid4().hex[:12]}"
        self.future: Any = None  # the distributed.Future, once submitted
        self.done = threading.Event()  # on_done has been called (or is being called)
        self._executor = executor

    def is_alive(self) -> bool:
        return not self.done.is_set()

    def terminate(self) -> None:
        self._executor._terminate(self, "terminated on request")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until ``on_done`` has been called; return whether it has."""
        return self.done.wait(timeout)

    def __repr__(self) -> str:
        return f"<dask run {self.spec.task_name!r} key={self.key!r} alive={self.is_alive()}>"


_EXECUTORS: weakref.WeakSet[DaskExecutor] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    for executor in list(_EXECUTORS):
        executor.shutdown(terminate=True)
        executor.join(10.0)


class DaskExecutor(Executor):
    """Runs each :class:`RunSpec` as a task on a Dask cluster.

    ``address``: the scheduler's address (``None``: a ``LocalCluster`` started on first
    use). ``max_runs``: most runs submitted and not ended (``None``: no limit; the cluster
    queues them), a number or a callable read at each ``capacity()`` (the session's live
    config). ``cluster_kwargs`` go to ``LocalCluster``.
    """

    kind = "dask"

    def __init__(
        self,
        clock: Clock,
        *,
        address: str | None = None,
        max_runs: int | Callable[[], int | None] | None = None,
        cluster_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(clock)
        self.address = address
        self._max_runs = max_runs
        self._cluster_kwargs = dict(cluster_kwargs or {})
        self._lock = threading.Lock()
        self._handles: dict[str, _DaskHandle] = {}  # by key: submitted or waiting
        self._waiting: list[_DaskHandle] = []  # started while the client is not up
        self._client: Any = None
        self._dashboard: str | None = None  # the client's dashboard link, if one runs
        self._cluster: Any = None
        self._connector: threading.Thread | None = None
        self._closed = False
        self._closer: threading.Thread | None = None
        self._gone = threading.Event()  # client and cluster closed after shutdown
        self._idle = threading.Event()  # set when the last run ends (wakes the closer)
        # Touched on the client's event loop only: finished runs whose results are to be
        # fetched, and whether a gather is under way.
        self._ready: list[tuple[_DaskHandle, Any]] = []
        self._gathering = False
        _EXECUTORS.add(self)

    # -- the Executor interface ------------------------------------------------------

    def start(self, spec: RunSpec, on_done: Callable[[RunOutcome], None]) -> RunHandle:
        if self._closed:
            raise RuntimeError("this dask executor has been shut down")
        if spec.flag.made_event() is not None:
            raise TaskSetupError(
                f"task {spec.task_name!r} runs on a Dask worker, where TerminationFlag() "
                "cannot be given: Dask cannot signal a task that is executing. Use a "
                "timeout (the run is marked terminate and its result dropped), or run it "
                "with execution='process' or 'thread'."
            )
        handle = _DaskHandle(self, spec, on_done)
        if spec.flag.is_set():  # asked to stop before it began: it never goes out
            self._finish(
                handle, Action.TERMINATE, exc_text="terminated: its flag was set before it started"
            )
            return handle
        with self._lock:
            client = self._client if self._usable(self._client) else None
            if client is None:
                self._handles[handle.key] = handle
                self._waiting.append(handle)
                self._connect_locked()
        if client is not None:
            self._submit(client, handle, in_start=True)
        # The session sets the flag with its reason (timeout, end_cond) kept on its side.
        spec.flag.on_set(lambda: self._terminate(handle, None))
        return handle

    def capacity(self) -> int | None:
        limit = self._max_runs() if callable(self._max_runs) else self._max_runs
        if limit is None:
            return None
        with self._lock:
            return max(0, limit - len(self._handles))

    def shutdown(self, *, terminate: bool) -> None:
        """Refuse new runs; with ``terminate``, end the running ones as ``terminate``.

        Does not wait: the client (and the ``LocalCluster`` started here) is closed on a
        thread of its own once no run is left. :meth:`join` waits for that.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            handles = list(self._handles.values())
        if terminate:
            for handle in handles:
                self._terminate(handle, "terminated: the scheduler shut down")
        self._closer = threading.Thread(
            target=self._close_when_idle, name="redengine-nb dask closer", daemon=True
        )
        self._closer.start()

    # -- extras ------------------------------------------------------------------------

    def join(self, timeout: float | None = None) -> bool:
        """After :meth:`shutdown`: wait until the client and cluster are closed."""
        if self._closer is None:
            return not self._handles
        return self._gone.wait(timeout)

    @property
    def running(self) -> list[RunHandle]:
        with self._lock:
            return list(self._handles.values())

    def cluster_info(self) -> dict[str, Any] | None:
        """What the panel shows: ``{'address', 'workers', 'dashboard'}`` of the cluster
        in use (``None`` before the first Dask run has connected). Read from the client's
        cached view of the scheduler (refreshed by Dask every few seconds): no round trip."""
        client = self._client
        if client is None:
            return None
        identity = getattr(client, "_scheduler_identity", None) or {}
        workers = identity.get("workers") or {}
        count = len(workers) if workers else identity.get("n_workers", 0)
        return {
            "address": identity.get("address") or client.scheduler.address,
            "workers": int(count or 0),
            "dashboard": self._dashboard,
        }

    # -- connecting --------------------------------------------------------------------

    @staticmethod
    def _usable(client: Any) -> bool:
        return client is not None and client.status == "running"

    def _connect_locked(self) -> None:
        """Start the connector thread unless it runs (called under the lock)."""
        if self._connector is not None:
            return
        self._connector = threading.Thread(
            target=self._connect, name="redengine-nb dask connect", daemon=True
        )
        self._connector.start()

    def _where(self) -> str:
        return repr(self.address) if self.address else "a LocalCluster"

    def _connect(self) -> None:
        client: Any = None
        error: str | None = None
        try:
            client = self._open_client()
        except BaseException as exc:
            error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            log.error("could not reach the Dask scheduler at %s: %s", self._where(), error)
        dashboard = None if client is None else _dashboard_link(client)
        with self._lock:
            self._connector = None
            waiting, self._waiting = self._waiting, []
            if client is not None:
                old, self._client = self._client, client
                self._dashboard = dashboard
            if error is not None:
                for handle in waiting:
                    self._handles.pop(handle.key, None)
        if client is not None:
            if old is not None and old is not client:
                threading.Thread(target=_close_quietly, args=(old,), daemon=True).start()
            for handle in waiting:
                self._submit(client, handle, in_start=False)
            if self._closed:
                self._wake_closer()
            return
        for handle in waiting:
            self._finish(
                handle,
                Action.FAIL,
                exc_text=f"the run could not start: the Dask scheduler at {self._where()} "
                f"could not be reached: {error}. The next Dask run tries again; check "
                "config 'dask_address' and that the scheduler is up.",
            )

    def _open_client(self) -> Any:
        import distributed

        client_class: Any = distributed.Client  # untyped
        if self.address:
            return client_class(self.address, set_as_default=False)
        if self._cluster is None:
            kwargs: dict[str, Any] = {
                "processes": True,
                "dashboard_address": ":0",
                "scheduler_kwargs": {"allowed_failures": 0},
            }
            kwargs.update(self._cluster_kwargs)
            # Its worker processes must not re-run a script's main module (one without
            # an `if __name__ == "__main__":` guard would start a scheduler in each).
            from .process import SKIP_MAIN_PREFIXES, _skip_main_in_children

            if _DASK_WORKER_NAME not in SKIP_MAIN_PREFIXES:
                SKIP_MAIN_PREFIXES.append(_DASK_WORKER_NAME)
            _skip_main_in_children()
            cluster_class: Any = distributed.LocalCluster
            self._cluster = cluster_class(**kwargs)
        return client_class(self._cluster, set_as_default=False)

    # -- one run -----------------------------------------------------------------------

    def _submit(self, client: Any, handle: _DaskHandle, *, in_start: bool) -> None:
        spec = handle.spec
        try:
            future = client.submit(
                run_on_worker,
                spec.target,
                spec.task_name,
                spec.output_limit,
                key=handle.key,
                pure=False,
                retries=0,
            )
        except Exception as exc:
            error = _submit_error(spec, exc)
            if in_start:
                raise error from exc
            with self._lock:
                self._handles.pop(handle.key, None)
            self._finish(handle, Action.FAIL, exc_text=f"the run could not start: {error}")
            return
        with self._lock:
            gone = handle.done.is_set()
            if not gone:
                handle.future = future
                self._handles[handle.key] = handle
        if gone:  # terminated while it was being submitted
            self._cancel(future)
            return
        client.loop.add_callback(self._await_end, handle, future)

    async def _await_end(self, handle: _DaskHandle, future: Any) -> None:
        """On the client's event loop: wait for the run's end, then report it. A finished
        run's result is fetched together with those of the runs that finished meanwhile
        (one gather for them all, not a round trip each)."""
        await future._state.wait()
        if future.status == "finished":
            self._ready.append((handle, future))
            if not self._gathering:
                self._gathering = True
                try:
                    await self._gather_ready(future.client)
                finally:
                    self._gathering = False
            return
        result = await future._result(raiseit=False)  # no data to fetch: the reason
        if future.status == "cancelled":
            self._finish(handle, Action.FAIL, exc_text=_cancel_reason(result))
        else:  # "error": Dask's own (a worker died, the graph could not be loaded, ...)
            error = result[1] if isinstance(result, tuple) and len(result) == 3 else result
            self._finish(handle, Action.FAIL, exc_text=_error_text(error))

    async def _gather_ready(self, client: Any) -> None:
        while self._ready:
            batch, self._ready = self._ready, []
            try:
                results = await client._gather([future for _, future in batch])
            except BaseException:  # one result could not come back: take them one by one
                for handle, future in batch:
                    await self._gather_one(handle, future)
                continue
            for (handle, _), (action, value, exc_text, output) in zip(batch, results, strict=True):
                self._finish(handle, Action(action), value, exc_text, output)

    async def _gather_one(self, handle: _DaskHandle, future: Any) -> None:
        try:
            action, value, exc_text, output = await future._result()
        except BaseException as exc:  # the result could not be fetched (or unpickled)
            if isinstance(exc, asyncio.CancelledError) and not future.cancelled():
                raise
            text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            self._finish(
                handle,
                Action.FAIL,
                exc_text=f"the run's result could not be brought back from the worker: {text}",
            )
            return
        self._finish(handle, Action(action), value, exc_text, output)

    def _finish(
        self,
        handle: _DaskHandle,
        action: Action,
        value: Any = None,
        exc_text: str | None = None,
        output: str | None = None,
    ) -> None:
        """Report the run's end once (the first of its result and a termination wins)."""
        with self._lock:
            if handle.done.is_set():
                return
            handle.done.set()
            self._handles.pop(handle.key, None)
            idle = not self._handles
            future, handle.future = handle.future, None
        if future is not None and action is Action.TERMINATE:
            self._cancel(future)
        del future  # its result is in hand: let the cluster forget it
        outcome = RunOutcome(action, self.clock.time(), value, exc_text, output)
        try:
            handle.on_done(outcome)
        except Exception:
            log.exception("on_done of task %r raised", handle.spec.task_name)
        if idle:
            self._wake_closer()

    def _terminate(self, handle: _DaskHandle, reason: str | None) -> None:
        with self._lock:
            if handle.done.is_set():
                return
            if handle in self._waiting:
                self._waiting.remove(handle)
        self._finish(handle, Action.TERMINATE, exc_text=reason)

    def _cancel(self, future: Any) -> None:
        """Cancel a run's future without waiting (on the client's event loop)."""
        client = future.client
        try:
            client.loop.add_callback(
                client._cancel, [future], reason="redengine-nb", msg="the run was terminated"
            )
        except Exception:  # the client is closing: nothing left to cancel
            log.debug("could not cancel %s", future.key, exc_info=True)

    # -- closing -----------------------------------------------------------------------

    def _wake_closer(self) -> None:
        self._idle.set()

    def _close_when_idle(self) -> None:
        while True:
            with self._lock:
                self._idle.clear()  # before looking: a run ending after this sets it
                if not self._handles and self._connector is None:
                    client, cluster = self._client, self._cluster
                    self._client = self._cluster = None
                    break
            self._idle.wait()
        if client is not None:
            _close_quietly(client)
        if cluster is not None:
            _close_quietly(cluster)
        self._gone.set()


def _dashboard_link(client: Any) -> str | None:
    """The link to the cluster's dashboard, or ``None`` where none runs.

    Every scheduler serves HTTP (health, metrics: its ``dashboard`` service), with or
    without the dashboard itself: ``dask scheduler --no-dashboard``, a scheduler without
    bokeh (its page then only says to install it). So the link is given only when the
    dashboard's list of plots, ``individual-plots.json`` beside it (what JupyterLab's Dask
    extension reads), names some. Asked once, when the client connects."""
    identity = getattr(client, "_scheduler_identity", None) or {}
    if "dashboard" not in (identity.get("services") or {}):
        return None
    try:
        link = str(client.dashboard_link)
    except Exception:  # a dashboard link template that cannot be filled
        return None
    if not link.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(
            urllib.parse.urljoin(link, "individual-plots.json"), timeout=2
        ) as reply:
            plots = json.loads(reply.read())
    except Exception:  # unreachable, refused, not JSON: nothing to link to
        return None
    return link if isinstance(plots, dict) and plots else None


def _close_quietly(thing: Any) -> None:
    try:
        thing.close()
    except Exception:
        log.debug("closing %r failed", thing, exc_info=True)


def _submit_error(spec: RunSpec, exc: Exception) -> TaskSetupError:
    from .process_child import _culprit

    culprit = _culprit(spec.target, spec.flag)
    what = culprit if culprit else "its function or arguments"
    return TaskSetupError(
        f"task {spec.task_name!r} cannot run on Dask: {what} cannot be pickled "
        f"({type(exc).__name__}: {exc}). Pass picklable values, create the object inside "
        "the task, or run it with execution='thread' or 'main'."
    )


def _cancel_reason(result: Any) -> str:
    text = str(result) if result is not None else ""
    if "scheduler-connection-lost" in text or "lost the connection" in text:
        return f"the run was lost: the Dask client lost the connection to the scheduler ({text})"
    return f"the run was cancelled on the Dask cluster ({text or 'no reason given'})"


def _error_text(exc: Any) -> str:
    name = type(exc).__name__
    if name == "KilledWorker":
        return f"the Dask worker running it died (KilledWorker): {exc}"
    return f"Dask could not run it: {name}: {exc}"
