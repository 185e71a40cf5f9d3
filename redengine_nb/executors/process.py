"""Process execution: each run in a fresh child process, forked from a template process
of our own on Linux (``template``), else started with ``forkserver`` or ``spawn``.

Why not ``fork`` of the scheduler: the scheduler process is threaded (runner, watcher,
the kernel's own threads), and forking a threaded process can copy a lock that another
thread holds and deadlock the child. Children start from a clean interpreter instead, and
the run's target travels as cloudpickle bytes, so functions defined in ``__main__`` or in
a notebook work too.

This module holds :class:`ProcessExecutor` and what both start paths share (the outcome
of a run, its deadlines, its termination); each path lives in its own module:

* **``template``** (the default on Linux): :mod:`.process_link` is the scheduler's side
  (starting the template, sending it runs, the watcher reading its reports),
  :mod:`.process_template` the template's side.
* **``forkserver``** (elsewhere on POSIX) and **``spawn``**: :mod:`.process_mp`
  (multiprocessing, with the forkserver preloaded and the main module not re-imported).

The parts of one run:

* **Pickling** happens in the parent, before anything starts: a target that cloudpickle
  cannot pickle raises :class:`~redengine_nb.errors.TaskSetupError` naming the task and the
  part that failed (a closure variable, an argument, the function).
* **Output**: the child points its file descriptors 1 and 2 at a file of its own in the
  executor's private temp folder (one folder per executor, made at its first run: a
  ``mkdir`` per run cost 30-80 ms on this machine's busy disk; with ``template`` an
  unnamed ``O_TMPFILE`` there), so ``print``, ``logging`` and the output of subprocesses
  the task starts are all captured. Only the tail (``spec.output_limit`` characters) is
  read, after the child has ended, also when it was killed (by the template, or by the
  parent from the run's files, which it then removes; the folder goes when the executor
  is shut down). (Memory is bounded; the file itself grows on disk for as long as the run
  writes.)
* **Result**: the child writes its outcome (and the cloudpickled return value) on a pipe
  the template reads (``template``), or to a file that it renames into place; a child
  killed mid-write leaves no half result (a cut pickle from a killed child is ignored).
* **Timeout / terminate()**: the child gets ``SIGTERM``, and ``SIGKILL`` after a grace
  period (2 s by default); the run is ``terminate``. (With ``template`` the template
  sends the signal, unless it has reaped the child already: never to a reused pid.)
  Setting ``spec.flag`` (what the session does for ``end_cond``) does the same.
* **TerminationFlag in a process**: if the target refers to ``spec.flag`` itself (the
  session binds the run's flag as the ``TerminationFlag()`` argument), the child receives
  its own ``threading.Event`` in its place, and ``SIGTERM`` *sets that event* instead of
  killing the child: the task can stop cleanly within the grace period. A target that does
  not refer to the flag keeps the default ``SIGTERM`` behaviour (the child dies at once).
* **A child that dies on its own** (``SIGKILL`` from outside, ``os._exit``, a segfault)
  while the scheduler lives is logged ``fail`` with e.g. "process killed by signal 9
  (SIGKILL)". ``crash`` is kept for runs cut off by the *scheduler* dying, found at its
  next start, as the spec says.
* **Timing**: timeouts and the grace period are measured in real (monotonic) seconds; the
  outcome's ``end`` is read from the session's clock.

**Children die with their scheduler.** A scheduler killed with ``SIGKILL`` must not leave
its runs working on: its restart marks them ``crash`` and starts their tasks again, and two
copies would run at once. How each path ties its children to the scheduler is told in
:mod:`.process_mp` (``forkserver``: ``PR_SET_PDEATHSIG`` and a check of the scheduler's
pid and start time) and :mod:`.process_template` (``template``). Processes a task starts
itself are its own business (a task that wants them gone does the same, or uses a process
group).

**At the next start** :func:`~redengine_nb.executors.orphans.sweep_orphans` looks at the
temp folders of runs (``redengine-run-<pid>-<start>-*``, one per executor, named after
the scheduler that made them): for one whose scheduler is gone, each child still alive --
the pid and start time recorded in its run's ``<n>.child`` file, or a line of the
template's ``children`` list (the template, then each child, written by the child
itself), so a reused pid is never hit -- is killed, and the folder removed. (With
``forkserver`` the pid is recorded when the forkserver sends it, a moment after the
start; ``PR_SET_PDEATHSIG`` covers that moment.) The session does this before it marks
any run ``crash``.

One watcher thread per executor waits with a timeout only when a deadline is pending:
on the template's report pipe and a wake-up pipe (``selectors``; it lives as long as the
template; :func:`.process_link.watch_template`), or on the children's sentinels and a
wake-up pipe (``multiprocessing.connection.wait``; it exits when no child is left;
:func:`.process_mp.watch_children`). It calls ``on_done``. Nothing polls.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import pickle
import shutil
import signal
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from ..clock import Clock
from ..records import Action
from .base import Executor, RunHandle, RunOutcome, RunSpec
from .orphans import workdir_prefix
from .process_child import child_termination_flag
from .process_handle import ProcessRunHandle
from .process_link import _TemplateHandle, _TemplateLink, start_in_template
from .process_mp import PRELOAD, _preload_forkserver, _ProcessHandle, start_in_child
from .process_mp import SKIP_MAIN_PREFIXES as SKIP_MAIN_PREFIXES
from .process_mp import _skip_main_in_children as _skip_main_in_children
from .process_template import frame

__all__ = [
    "DEFAULT_GRACE",
    "ProcessExecutor",
    "child_termination_flag",
    "default_start_method",
]

log = logging.getLogger(__name__)

#: Seconds between ``SIGTERM`` and ``SIGKILL`` when a process run is terminated.
DEFAULT_GRACE = 2.0


_LINUX = sys.platform.startswith("linux")
_METHODS = ("template", "forkserver", "spawn") if _LINUX else ("forkserver", "spawn")


def default_start_method() -> str:
    """``template`` on Linux (our own template process, :mod:`.process_template`),
    ``forkserver`` elsewhere where the platform has it (POSIX), else ``spawn``. Never
    ``fork``."""
    if _LINUX:
        return "template"
    if "forkserver" in multiprocessing.get_all_start_methods():
        return "forkserver"
    return "spawn"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


#: Seconds after a run's KILL was sent through the template without the run's end
#: coming back, after which the template is taken for stuck and killed.
_TEMPLATE_ANSWER = 30.0


_EXECUTORS: weakref.WeakSet[ProcessExecutor] = weakref.WeakSet()


@atexit.register
def _terminate_all_at_exit() -> None:
    """The interpreter is ending: its process runs are cut off, not waited for."""
    for executor in list(_EXECUTORS):
        executor.shutdown(terminate=True)
        executor.join(executor.grace + 1.0)


class ProcessExecutor(Executor):
    """Runs each :class:`RunSpec` in a child process; at most ``max_processes`` at once.

    ``capacity()`` tells the session how many more may start; ``start`` itself does not
    refuse (the session makes due tasks wait). ``start_method`` is ``'template'`` (Linux
    only), ``'forkserver'`` or ``'spawn'`` (default: :func:`default_start_method`);
    ``'fork'`` is refused.
    """

    kind = "process"

    def __init__(
        self,
        max_processes: int,
        clock: Clock,
        *,
        start_method: str | None = None,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        if max_processes < 1:
            raise ValueError(f"max_processes must be at least 1, got {max_processes!r}")
        method = start_method or default_start_method()
        if method not in _METHODS:
            raise ValueError(
                f"start_method {method!r} is not allowed here; use "
                + " or ".join(repr(m) for m in _METHODS)
                + " (forking the threaded scheduler process can deadlock the child)"
            )
        super().__init__(clock)
        self.max_processes = max_processes
        self.grace = grace
        self.start_method = method
        # typeshed types get_context() as BaseContext, which lacks .Process
        self._ctx: Any = None if method == "template" else multiprocessing.get_context(method)
        _skip_main_in_children()
        self._lock = threading.Lock()
        # keyed by sentinel (forkserver, spawn) or run number (template)
        self._children: dict[Any, Any] = {}
        # The template process (start_method 'template'), its watcher, what it was sent.
        self._link: _TemplateLink | None = None
        self._link_lock = threading.Lock()  # one template started at a time
        self._send_lock = threading.Lock()  # one message written at a time
        # The watcher thread and its wake-up pipe exist only while children do.
        self._wake_r: Connection | None = None
        self._wake_w: Connection | None = None
        self._wake_pending = False
        self._watcher: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._closed = False
        # One folder for the runs' files, made at the first run: a mkdir costs 30-80 ms
        # on a busy ext4 disk here, a file in an existing folder 0.05 ms.
        self._folder: str | None = None
        self._seq = 0
        if method == "forkserver":
            _preload_forkserver(self._ctx, PRELOAD)
        _EXECUTORS.add(self)

    # -- the Executor interface ------------------------------------------------------

    def start(self, spec: RunSpec, on_done: Callable[[RunOutcome], None]) -> RunHandle:
        if self._closed:
            raise RuntimeError("this process executor has been shut down")
        if self._ctx is None:
            return start_in_template(self, spec, on_done)
        return start_in_child(self, spec, on_done)

    def capacity(self) -> int:
        with self._lock:
            return max(0, self.max_processes - len(self._children))

    def shutdown(self, *, terminate: bool) -> None:
        """Refuse new runs; with ``terminate``, TERM (then KILL) the running ones.

        Does not wait: ``on_done`` is still called for every run, from the watcher thread.
        Use :meth:`join` to wait (not while holding a lock that ``on_done`` takes).
        """
        self._closed = True
        with self._lock:
            handles = list(self._children.values())
            self._remove_folder()
        if terminate:
            for handle in handles:
                self._request_terminate(handle, "terminated: the scheduler shut down")
        self._wake()  # a template's watcher ends the template once no run is left

    # -- extras ------------------------------------------------------------------------

    def join(self, timeout: float | None = None) -> bool:
        """Wait until no run is alive and every ``on_done`` has returned."""
        return self._idle.wait(timeout)

    @property
    def running(self) -> list[RunHandle]:
        with self._lock:
            return list(self._children.values())

    # -- internals (shared by both start paths) ----------------------------------------

    def _report_outcome(self, handle: Any, outcome: RunOutcome) -> None:
        try:
            handle.on_done(outcome)
        except Exception:
            log.exception("on_done of task %r raised", handle.spec.task_name)
        finally:
            handle.done.set()

    def _send_signal(self, handle: Any, signum: int) -> None:
        if isinstance(handle, _TemplateHandle):
            link = handle.link
            if link is not None:
                try:
                    with self._send_lock:
                        link.send(frame(("kill", handle.seq, signum)))
                except OSError:  # the template is gone: its children with it
                    pass
        elif signum == signal.SIGKILL:
            handle.process.kill()
        else:
            handle.process.terminate()

    def _run_folder(self) -> str:
        folder = self._folder
        if folder is None or not os.path.isdir(folder):
            # Named after this scheduler, for the orphan sweep of its next start.
            folder = self._folder = tempfile.mkdtemp(prefix=workdir_prefix())
        return folder

    def _remove_folder(self) -> None:
        """Remove the runs' folder once the executor is shut down and idle (under the
        lock)."""
        if self._closed and not self._children and self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def _hook_flag(self, handle: _ProcessHandle | _TemplateHandle) -> None:
        """Make ``spec.flag.set()`` wake the watcher, which then terminates the run."""
        executor = weakref.ref(self)

        def terminate() -> None:
            owner = executor()
            if owner is not None and handle.is_alive():
                owner._request_terminate(handle, "terminated: its flag was set")

        handle.spec.flag.on_set(terminate)

    def _request_terminate(self, handle: ProcessRunHandle, reason: str) -> None:
        with self._lock:
            if handle.term_reason is not None or handle.reaped:
                return
            handle.term_reason = reason
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            link = self._link
            writer = self._wake_w
            if (writer is None and link is None) or self._wake_pending:
                return  # no watcher to wake, or a wake-up is already on its way
            self._wake_pending = True
            try:
                if link is not None:
                    os.write(link.wake_w, b"!")  # under the lock: closed only under it
                    return
            except OSError:
                return
        try:
            assert writer is not None
            writer.send_bytes(b"!")
        except OSError:  # the watcher closed the pipe as it exited: nothing to wake
            pass

    def _act_on_deadlines(self, handles: list[Any]) -> float | None:
        """Send TERM/KILL that are due; return seconds until the next deadline."""
        now = time.monotonic()
        next_at: float | None = None
        for handle in handles:
            with self._lock:
                if handle.term_reason is None and handle.deadline is not None:
                    if now >= handle.deadline:
                        handle.term_reason = (
                            f"terminated: timeout of {handle.spec.timeout:g} s exceeded"
                        )
                    else:
                        next_at = _earliest(next_at, handle.deadline)
                send_term = handle.term_reason is not None and not handle.term_sent
                if send_term:
                    handle.term_sent = True
                    handle.kill_at = now + self.grace
            if send_term:
                self._send_signal(handle, signal.SIGTERM)
            if handle.kill_at is not None and not handle.killed:
                if now >= handle.kill_at:
                    handle.killed = True
                    self._send_signal(handle, signal.SIGKILL)
                else:
                    next_at = _earliest(next_at, handle.kill_at)
            if handle.killed and isinstance(handle, _TemplateHandle):
                # The template sends the KILL; its report follows within milliseconds.
                # A template that does not answer (stopped, stuck) is killed itself: its
                # runs are then reported lost instead of hanging for ever.
                give_up = (handle.kill_at or now) + _TEMPLATE_ANSWER
                link = handle.link
                if now < give_up:
                    next_at = _earliest(next_at, give_up)
                elif _uninterruptible(handle._pid):
                    # The KILL was sent; the child waits in the kernel (a hung NFS
                    # mount) and dies when it leaves. Not the template's fault: keep it
                    # and the other runs.
                    next_at = _earliest(next_at, now + _TEMPLATE_ANSWER)
                elif link is not None and link.proc.returncode is None:
                    log.error(
                        "the process template (pid %d) did not end run %r %.0f s after "
                        "its KILL: killing the template",
                        link.proc.pid,
                        handle.spec.task_name,
                        _TEMPLATE_ANSWER,
                    )
                    link.proc.kill()
        return None if next_at is None else max(0.0, next_at - now)

    @staticmethod
    def _decide(
        handle: Any,
        end: float,
        code: int | None,
        result: tuple[str, bytes | None, str | None] | None,
        output: str | None,
    ) -> RunOutcome:
        """The outcome from the exit code, the child's result (if it wrote one), output."""
        if handle.term_reason is not None:
            return RunOutcome(Action.TERMINATE, end, exc_text=handle.term_reason, output=output)
        if result is None:
            if code is not None and code < 0:
                why = f"process killed by signal {-code} ({_signal_name(-code)})"
            else:
                why = f"process exited with status {code} before reporting a result"
            return RunOutcome(Action.FAIL, end, exc_text=why, output=output)
        action_text, value_bytes, exc_text = result
        action = Action(action_text)
        value: Any = None
        if value_bytes is not None:
            try:
                value = pickle.loads(value_bytes)
            except Exception as exc:
                return RunOutcome(
                    Action.FAIL,
                    end,
                    output=output,
                    exc_text="the task's return value could not be loaded in the scheduler "
                    f"process: {type(exc).__name__}: {exc}",
                )
        return RunOutcome(action, end, return_value=value, exc_text=exc_text, output=output)


def _uninterruptible(pid: int | None) -> bool:
    """Whether process ``pid`` is in uninterruptible sleep (state ``D``)."""
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return False
    return raw[raw.rfind(b")") + 2 : raw.rfind(b")") + 3] == b"D"


def _earliest(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)
