"""Process execution: each run in a fresh child process, forked from a template process
of our own on Linux (``template``), else started with ``forkserver`` or ``spawn``.

Why not ``fork`` of the scheduler: the scheduler process is threaded (runner, watcher,
the kernel's own threads), and forking a threaded process can copy a lock that another
thread holds and deadlock the child. Children start from a clean interpreter instead, and
the run's target travels as cloudpickle bytes, so functions defined in ``__main__`` or in
a notebook work too.

**``template``** (the default on Linux; :mod:`.process_template` has both sides): a clean,
single-threaded interpreter started once per executor at its first run
(``python -c`` importing :mod:`.process_template`, never a fork of the scheduler), from the
executor's watcher thread. Per run the scheduler writes one message on its control pipe
(run number, cloudpickled target, output limit, and ``sys.path`` / working folder when they
changed); the template forks, and reports on one pipe the child's pid, then its exit
status, its result and the tail of its output; the watcher reads that pipe. Nothing is
pickled for multiprocessing, no socket or file is made per run (the output goes to an
unnamed ``O_TMPFILE``, the result on a pipe), and the child runs no Python bootstrap. The
modules a run's target came from (a helper module, a notebook's imports pickled by
reference) are imported by the template after the first run that needed them, so later
runs are forked with them loaded -- unless loading them in the child started a thread
(the template would then fork from a threaded process; should one start a thread anyway,
the template says so on stderr). Measured (docs/performance.md, issue 15 item 2): a burst of
process runs 143-168 -> 550-640 runs/s; ``start()`` 1.4-2 ms -> 40-120 µs of the scheduler
thread. The template itself is idle between runs (one ``select``) and is ended when the
executor is shut down and idle.

**``forkserver``** (elsewhere on POSIX) and **``spawn``**: multiprocessing; the forkserver
imports the child side (:data:`PRELOAD`: this package's ``process_child`` and cloudpickle)
once, so a child is forked warm; the output and result are files in the executor's
folder. Unlike plain
``multiprocessing``, the children do *not* re-import theUnlike plain
``multiprocessing``, the children do *not* re-import the
main module (see :func:`_skip_main_in_children`), so a script whose ``app.run()`` is not
under ``if __name__ == "__main__":`` does not start a scheduler inside each task.

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

**Children die with their scheduler.** (This paragraph is the ``forkserver`` path; the
``template`` path is described in :mod:`.process_template`: the template asks for
``SIGKILL`` when the watcher thread that started it ends -- that thread lives as long as
the template -- and exits at the end of file of its control pipe; each child asks for
``SIGKILL`` when the template ends, and checks that the template is still its parent.)
A scheduler killed with ``SIGKILL`` must not leave
its runs working on: its restart marks them ``crash`` and starts their tasks again, and two
copies would run at once. Of the three ways to tie a child to its scheduler -- Linux's
``PR_SET_PDEATHSIG``, a process group the scheduler kills, a watchdog pipe the child
reads -- only the first needs neither the scheduler alive at the end (a group is killed
by someone who still lives) nor the task's cooperation (a pipe must be read by a thread
of the child, which cannot run while the task holds the GIL in a C call). So each child,
first thing, asks the kernel (``prctl`` through :mod:`ctypes`) for ``SIGKILL`` when its
parent ends. Its parent is the forkserver, which exits when the write ends of its "alive"
pipe are all closed: the scheduler holds one, and multiprocessing gives every child one
too -- which the child closes, so that the forkserver's life, and so the child's, ends
with the scheduler's. The child then
checks that the scheduler is still alive (pid and start time), closing the window between
its fork and the ``prctl``. Elsewhere than Linux, and with ``spawn`` (where the parent is
the scheduler *thread* that started the child, whose end would kill it), this is not
done; the restart check below is then the only guard. Processes a task starts itself are
its own business (a task that wants them gone does the same, or uses a process group).

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
template), or on the children's sentinels and a wake-up pipe
(``multiprocessing.connection.wait``; it exits when no child is left). It calls
``on_done``. Nothing polls.
"""

from __future__ import annotations

import atexit
import functools
import io
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.context as mp_context
import multiprocessing.forkserver as mp_forkserver
import multiprocessing.process as mp_process
import multiprocessing.spawn as mp_spawn
import multiprocessing.util as mp_util
import os
import pickle
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from multiprocessing import popen_forkserver, reduction
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from ..clock import Clock
from ..errors import TaskSetupError
from ..records import Action
from ..runlog.owner import current_owner
from .base import Executor, RunHandle, RunOutcome, RunSpec
from .capture import TRUNCATED
from .orphans import note_child, workdir_prefix
from .process_child import child_main, child_termination_flag, pickle_target
from .process_template import FrameReader, frame

__all__ = [
    "DEFAULT_GRACE",
    "ProcessExecutor",
    "child_termination_flag",
    "default_start_method",
]

log = logging.getLogger(__name__)

#: Seconds between ``SIGTERM`` and ``SIGKILL`` when a process run is terminated.
DEFAULT_GRACE = 2.0

# A run's files, in its executor's folder: "<folder>/<n>.out" and "<folder>/<n>.result"
# (their prefix "<folder>/<n>" is the handle's ``workdir``).
_OUTPUT_FILE = ".out"
_RESULT_FILE = ".result"
_RUN_SUFFIXES = (_OUTPUT_FILE, _RESULT_FILE, _RESULT_FILE + ".tmp", ".child")
#: Modules the forkserver imports once, so that a child forked from it starts warm.
PRELOAD = ["redengine_nb.executors.process_child", "redengine_nb.executors.process"]


class _PipelinedPopen(popen_forkserver.Popen):
    """A forkserver start that does not wait for the forkserver to fork.

    multiprocessing's forkserver ``Popen`` sends the request, then blocks until the
    forkserver has forked and written back the child's pid: on this 2-core machine, with
    the children of the previous starts competing for the CPU, that round trip was ~4 ms
    of the 5.6 ms a start cost the scheduler thread. Here the pid is read when it is
    first needed, or by the executor's watcher when the forkserver sends it (the
    sentinel becomes readable once for the pid, then again for the exit status). The
    reads of the sentinel are under a lock, so the pid and the exit status are never
    taken one for the other by two threads.
    """

    def __init__(self, process_obj: Any) -> None:
        self._read_lock = threading.Lock()
        self._pid: int | None = None
        self._pid_lost = False  # the forkserver ended before it sent the pid
        super().__init__(process_obj)

    @property  # type: ignore[override]
    def pid(self) -> int | None:
        if self._pid is None and not self._pid_lost:
            with self._read_lock:
                self._read_pid()
        return self._pid

    @pid.setter
    def pid(self, value: int | None) -> None:
        self._pid = value

    @property
    def pid_known(self) -> bool:
        return self._pid is not None or self._pid_lost

    def _read_pid(self) -> None:
        """Read the pid (under the lock; blocks until the forkserver sends it)."""
        if self._pid is None and not self._pid_lost:
            try:
                self._pid = mp_forkserver.read_signed(self.sentinel)
            except (OSError, EOFError):
                self._pid_lost = True
                self.returncode = 255

    def _launch(self, process_obj: Any) -> None:
        # popen_forkserver.Popen._launch (CPython 3.9-3.13), without its last line: the
        # read of the pid.
        prep_data = mp_spawn.get_preparation_data(process_obj._name)
        buf = io.BytesIO()
        mp_context.set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            mp_context.set_spawning_popen(None)
        self.sentinel, w = mp_forkserver.connect_to_new_process(self._fds)  # type: ignore[attr-defined]
        parent_w = os.dup(w)  # the child's sign that its parent lives
        close_fds: Any = mp_util.close_fds  # type: ignore[attr-defined]
        self.finalizer = mp_util.Finalize(self, close_fds, (parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as file:
            file.write(buf.getbuffer())

    def poll(self, flag: int = os.WNOHANG) -> int | None:
        blocking = flag != os.WNOHANG
        if not self._read_lock.acquire(blocking):
            return None  # another thread is reading the sentinel
        try:
            timeout = None if blocking else 0
            if self.returncode is None and not self.pid_known:
                if not multiprocessing.connection.wait([self.sentinel], timeout):
                    return None
                self._read_pid()
            if self.returncode is None:
                if not multiprocessing.connection.wait([self.sentinel], timeout):
                    return None
                try:
                    self.returncode = mp_forkserver.read_signed(self.sentinel)
                except (OSError, EOFError):  # the forkserver itself was killed
                    self.returncode = 255
            return self.returncode
        finally:
            self._read_lock.release()


class _TaskProcess(mp_context.ForkServerProcess):
    """A forkserver process started with :class:`_PipelinedPopen`, and not left in
    multiprocessing's list of children: every ``Process.start()`` polls each process in
    that list (a ``select`` per child, 23 per start with 50 runs alive: a third of the
    scheduler thread's time in a burst). The executor's watcher reaps its own children,
    and its atexit hook ends them."""

    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _PipelinedPopen(process_obj)

    def start(self) -> None:
        super().start()
        mp_process._children.discard(self)  # type: ignore[attr-defined]


def _remove_run_files(prefix: str) -> None:
    for suffix in _RUN_SUFFIXES:
        try:
            os.unlink(prefix + suffix)
        except OSError:
            pass


def _preload_forkserver(ctx: Any, modules: list[str]) -> None:
    """Have the forkserver import ``modules`` when it starts (added to what others asked).

    Only a forkserver started after this preloads them: one already running is kept."""
    server: Any = getattr(mp_forkserver, "_forkserver", None)
    current = list(getattr(server, "_preload_modules", []) or [])
    wanted = current + [m for m in modules if m not in current]
    if wanted != current:
        ctx.set_forkserver_preload(wanted)


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


# ----------------------------------------------------------------------- the parent side

_CHILD_NAME_PREFIX = "redengine-nb task "
#: Name prefixes of the processes started without the main module (the Dask executor adds
#: the worker processes of the LocalCluster it starts).
SKIP_MAIN_PREFIXES = [_CHILD_NAME_PREFIX]


def _skip_main_in_children() -> None:
    """Start our children without re-running the parent's main module.

    ``spawn`` and ``forkserver`` children normally import the parent's ``__main__`` (as
    ``__mp_main__``) before unpickling their target. A run does not need it (cloudpickle
    ships ``__main__`` functions and classes by value), and it is harmful: a script that
    builds an app and calls ``app.run()`` without an ``if __name__ == "__main__":`` guard
    would start a second scheduler inside every task process. The preparation data of
    processes *named by this module* is therefore stripped of the main-module entries;
    every other process is left as multiprocessing makes it.

    This relies on CPython internals: ``multiprocessing.spawn.get_preparation_data`` (also
    used by ``forkserver``) and its ``init_main_from_path`` / ``init_main_from_name`` keys,
    read by ``spawn.prepare`` in the child. Without this patch (or if a Python renames
    them, so that it silently does nothing), each task child runs the parent's main
    module again before its task: an unguarded script's whole body (its side effects, a
    second scheduler, process tasks of its own), and at best the import cost of the main
    module (``ipykernel_launcher`` in a kernel) on every run.
    ``tests/executors/test_process_main_guard.py`` pins both keys and the behaviour, and
    fails naming the Python version if they change.
    """
    import multiprocessing.spawn as mp_spawn

    original = mp_spawn.get_preparation_data
    if getattr(original, "_redengine_nb_skips_main", False):
        return

    @functools.wraps(original)
    def get_preparation_data(name: str) -> dict[str, Any]:
        data: dict[str, Any] = original(name)
        if isinstance(name, str) and name.startswith(tuple(SKIP_MAIN_PREFIXES)):
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    get_preparation_data._redengine_nb_skips_main = True  # type: ignore[attr-defined]
    mp_spawn.get_preparation_data = get_preparation_data


def _read_tail(path: str, limit: int) -> str | None:
    """The last ``limit`` characters of a UTF-8 file (``None`` if empty or missing).

    A cut is marked the way :mod:`redengine_nb.executors.capture` marks it for thread runs.
    """
    limit = max(1, limit)
    try:
        with open(path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            start = max(0, size - 4 * limit)  # at most 4 bytes per character
            file.seek(start)
            data = file.read()
    except OSError:
        return None
    text = data.decode("utf-8", errors="replace")
    if start > 0 or len(text) > limit:
        return TRUNCATED + text[-limit:]
    return text or None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class _ProcessHandle(RunHandle):
    """A live process run. State changes happen on the watcher thread, under the lock."""

    def __init__(
        self,
        executor: ProcessExecutor,
        spec: RunSpec,
        on_done: Callable[[RunOutcome], None],
        process: BaseProcess,
        workdir: str,
    ) -> None:
        self.spec = spec
        self._executor = executor
        self.on_done = on_done
        self.process = process
        self.workdir = workdir
        self.deadline = None if spec.timeout is None else time.monotonic() + spec.timeout
        #: Why termination was asked for (``None``: it was not).
        self.term_reason: str | None = None
        self.term_sent = False
        self.kill_at: float | None = None
        self.killed = False
        #: Its pid was recorded for the orphan sweep (see ``_watch``).
        self.noted = False
        #: Taken off the watch list: its outcome is being decided, terminate() is too late.
        self.reaped = False
        self.done = threading.Event()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def is_alive(self) -> bool:
        return not self.done.is_set()

    def terminate(self) -> None:
        self._executor._request_terminate(self, "terminated on request")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until ``on_done`` has been called; return whether it has."""
        return self.done.wait(timeout)

    def __repr__(self) -> str:
        state = "alive" if self.is_alive() else "done"
        return f"<process run {self.spec.task_name!r} pid={self.pid} {state}>"


class _TemplateHandle(RunHandle):
    """A run forked by the template process (see :mod:`.process_template`). Its state
    changes happen on the watcher thread, under the executor's lock."""

    def __init__(
        self,
        executor: ProcessExecutor,
        spec: RunSpec,
        on_done: Callable[[RunOutcome], None],
        seq: int,
    ) -> None:
        self.spec = spec
        self._executor = executor
        self.on_done = on_done
        self.seq = seq
        self.deadline = None if spec.timeout is None else time.monotonic() + spec.timeout
        self.term_reason: str | None = None
        self.term_sent = False
        self.kill_at: float | None = None
        self.killed = False
        self.reaped = False
        self.done = threading.Event()
        self._pid: int | None = None
        self.pid_known = threading.Event()  # set when the template reports it (or the end)
        #: The template it was sent to (its kill messages go there; it is lost with it).
        self.link: _TemplateLink | None = None

    @property
    def pid(self) -> int | None:
        """The child's pid (waits for the template to report it, a moment after start)."""
        self.pid_known.wait(_PID_GUARD)
        return self._pid

    def is_alive(self) -> bool:
        return not self.done.is_set()

    def terminate(self) -> None:
        self._executor._request_terminate(self, "terminated on request")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until ``on_done`` has been called; return whether it has."""
        return self.done.wait(timeout)

    def __repr__(self) -> str:
        state = "alive" if self.is_alive() else "done"
        return f"<process run {self.spec.task_name!r} pid={self._pid} {state}>"


#: Seconds ``handle.pid`` waits for the template's report at most (a guard, not a delay:
#: the report comes within milliseconds of the start).
_PID_GUARD = 60.0

#: Seconds after a run's KILL was sent through the template without the run's end
#: coming back, after which the template is taken for stuck and killed.
_TEMPLATE_ANSWER = 30.0

#: What the template process runs (``python -c``): argv is [folder, scheduler pid, the
#: folder holding the redengine_nb package].
_TEMPLATE_BOOT = (
    "import sys; sys.path.insert(0, sys.argv.pop()); "
    "from redengine_nb.executors.process_template import template_main; template_main()"
)


class _TemplateLink:
    """The scheduler's ends of one template process."""

    __slots__ = (
        "closed",
        "control",
        "finalizer",
        "proc",
        "report",
        "sent_env",
        "wake_r",
        "wake_w",
    )

    def __init__(
        self, proc: subprocess.Popen[bytes], control: int, report: int, wake: tuple[int, int]
    ) -> None:
        self.proc = proc
        self.control = control  # its stdin: run and kill messages
        self.report = report  # its stdout: pids and ends
        self.wake_r, self.wake_w = wake
        self.closed = False  # control closed (under the executor's send lock)
        #: The sys.path and working folder this template was last sent (send lock).
        self.sent_env: tuple[list[str], str] | None = None
        #: Wakes the watcher if the executor is garbage-collected without a shutdown.
        self.finalizer: weakref.finalize[Any, Any] | None = None

    def send(self, data: bytes) -> None:
        """Write one message on the control pipe (the caller holds the send lock)."""
        if self.closed:
            raise BrokenPipeError("the template process has ended")
        view = memoryview(data)
        while view:
            view = view[os.write(self.control, view) :]


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
            return self._start_in_template(spec, on_done)
        payload, uses_flag = pickle_target(spec)
        folder = self._run_folder()
        with self._lock:
            self._seq += 1
            workdir = os.path.join(folder, str(self._seq))  # a prefix of the run's files
        out_path = workdir + _OUTPUT_FILE
        result_path = workdir + _RESULT_FILE
        # The child checks that this scheduler lives (see "Children die with ...").
        scheduler = current_owner() if self.start_method == "forkserver" else None
        make = _TaskProcess if self.start_method == "forkserver" else self._ctx.Process
        process = make(
            target=child_main,
            args=(payload, uses_flag, out_path, result_path, scheduler),
            name=_CHILD_NAME_PREFIX + spec.task_name,
            daemon=False,  # a task may start processes of its own; atexit ends ours
        )
        try:
            process.start()
        except Exception as exc:
            _remove_run_files(workdir)
            raise TaskSetupError(
                f"task {spec.task_name!r}: could not start its process "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        if not isinstance(getattr(process, "_popen", None), _PipelinedPopen):
            note_child(workdir, process.pid)  # else when the forkserver sends it (_watch)
        handle = _ProcessHandle(self, spec, on_done, process, workdir)
        with self._lock:
            self._children[process.sentinel] = handle
            self._idle.clear()
            if self._watcher is None:
                self._wake_r, self._wake_w = multiprocessing.Pipe(duplex=False)
                self._wake_pending = False
                self._watcher = threading.Thread(
                    target=self._watch, name="redengine-nb process watcher", daemon=True
                )
                self._watcher.start()
        if spec.flag.is_set():
            self._request_terminate(handle, "terminated: its flag was set before it started")
        else:
            self._hook_flag(handle)  # a set() from now on terminates it (at once if it was)
            self._wake()
        return handle

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

    # -- internals -----------------------------------------------------------------------

    # -- the template process ('template') ----------------------------------------------

    def _start_in_template(self, spec: RunSpec, on_done: Callable[[RunOutcome], None]) -> RunHandle:
        payload, uses_flag = pickle_target(spec)  # a TaskSetupError before anything starts
        with self._lock:
            self._seq += 1
            seq = self._seq
        handle = _TemplateHandle(self, spec, on_done, seq)
        try:
            cwd = os.getcwd()
        except OSError:  # the working folder was removed: the template keeps its own
            cwd = ""
        env_now: tuple[list[str], str] = (list(sys.path), cwd)
        for attempt in (1, 2):
            link: _TemplateLink | None = None
            try:
                link = self._template()
                with self._lock:
                    handle.link = link
                    self._children[seq] = handle  # before its reports can come
                    self._idle.clear()
                with self._send_lock:
                    # sys.path and the working folder, if this template lacks them
                    env = None if env_now == link.sent_env else env_now
                    link.send(frame(("run", seq, payload, uses_flag, spec.output_limit, env)))
                    link.sent_env = env_now
            except Exception as exc:
                with self._lock:
                    mine = self._children.pop(seq, None)
                    if not self._children:
                        self._idle.set()
                if mine is None:  # the template ended meanwhile: the run was reported lost
                    return handle
                if (
                    attempt == 1
                    and link is not None
                    and isinstance(exc, BrokenPipeError)
                    and not self._closed
                ):
                    # The template has died and its watcher has not seen it yet. Nothing
                    # read this message (no read end is left), so no child was forked
                    # for it: start the run on a fresh template rather than not at all.
                    self._retire(link)
                    continue
                raise TaskSetupError(
                    f"task {spec.task_name!r}: could not start its process "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
            break
        if handle.deadline is not None:
            # its watcher counts from now (not from the template's first report about
            # it, which a stuck template never sends)
            self._wake()
        if spec.flag.is_set():
            self._request_terminate(handle, "terminated: its flag was set before it started")
        else:
            self._hook_flag(handle)  # a set() from now on terminates it (at once if it was)
        return handle

    def _template(self) -> _TemplateLink:
        """The template process, started (with its watcher) if there is none."""
        link = self._link
        if link is not None:
            return link
        with self._link_lock:
            if self._link is None:
                folder = self._run_folder()
                started: list[_TemplateLink | BaseException] = []
                ready = threading.Event()
                watcher = threading.Thread(
                    target=_watch_template,
                    args=(weakref.ref(self), folder, started, ready),
                    name="redengine-nb process watcher",
                    daemon=True,
                )
                watcher.start()
                ready.wait()
                if isinstance(started[0], BaseException):
                    raise started[0]
                with self._lock:
                    self._watcher = watcher
                    self._link = started[0]
            assert self._link is not None
            return self._link

    def _retire(self, link: _TemplateLink) -> None:
        """``link``'s template is dead: the next run starts a new one. Its watcher still
        reports its runs lost when it sees the end of the report pipe."""
        with self._link_lock, self._lock:
            if self._link is link:
                self._link = None
                self._watcher = None

    def _spawn_template(self, folder: str) -> _TemplateLink:
        """Start the template process (on the watcher thread: the template asks for
        SIGKILL when the thread that started it ends, and this thread lives as long)."""
        control_r, control_w = os.pipe()
        report_r, report_w = os.pipe()
        package_home = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _TEMPLATE_BOOT, folder, str(os.getpid()), package_home],
                stdin=control_r,
                stdout=report_w,
                close_fds=True,
                # Its own process group: a terminal's Ctrl-C goes to the scheduler, which
                # ends its runs (TERM, then KILL), not to the template and every child.
                process_group=0,
            )
        except BaseException:
            for fd in (control_r, control_w, report_r, report_w):
                os.close(fd)
            raise
        os.close(control_r)
        os.close(report_w)
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        return _TemplateLink(proc, control_w, report_r, (wake_r, wake_w))

    def _end_template(self, link: _TemplateLink, lost: bool) -> None:
        if link.finalizer is not None:
            link.finalizer.detach()
        with self._link_lock, self._lock:
            if self._link is link:
                self._link = None
                self._watcher = None
            self._wake_pending = False
            orphans = []
            if lost:  # its runs (a newer template's, if one was started, live on)
                for key, handle in list(self._children.items()):
                    if handle.link is link:
                        orphans.append(handle)
                        del self._children[key]
        with self._send_lock:
            link.closed = True
            os.close(link.control)  # the template's end of file: it exits
        try:
            status = link.proc.wait(5.0)
        except subprocess.TimeoutExpired:
            link.proc.kill()
            status = link.proc.wait()
        for fd in (link.report, link.wake_r, link.wake_w):
            os.close(fd)
        for handle in orphans:
            handle.pid_known.set()
            why = (
                "the template process it was forked from ended"
                if handle._pid is not None
                else "the template process ended before it reported forking it"
            )
            self._report_outcome(
                handle,
                RunOutcome(
                    Action.FAIL,
                    self.clock.time(),
                    exc_text=f"process lost: {why} (exit status {status})",
                ),
            )
        with self._lock:
            self._remove_folder()
            if not self._children:
                self._idle.set()

    def _on_report(self, message: tuple[Any, ...]) -> None:
        kind, seq = message[0], message[1]
        with self._lock:
            handle = self._children.get(seq)
            if handle is None:
                return
            if kind == "pid":
                handle._pid = message[2]
                handle.pid_known.set()
                return
            del self._children[seq]
            handle.reaped = True
        handle.pid_known.set()
        _kind, _seq, status, result, cut, tail, error = message
        try:
            outcome = self._template_outcome(handle, status, result, cut, tail, error)
        except Exception:
            outcome = RunOutcome(
                Action.FAIL,
                self.clock.time(),
                exc_text="redengine_nb could not read the result of the "
                "process run:\n" + traceback.format_exc(),
            )
        self._report_outcome(handle, outcome)
        with self._lock:
            if not self._children:
                self._idle.set()

    def _template_outcome(
        self,
        handle: _TemplateHandle,
        status: int | None,
        result: bytes | None,
        cut: bool,
        tail: bytes,
        error: str | None,
    ) -> RunOutcome:
        end = self.clock.time()
        limit = max(1, handle.spec.output_limit)
        text = tail.decode("utf-8", errors="replace")
        output = TRUNCATED + text[-limit:] if cut or len(text) > limit else text or None
        if error is not None:
            return RunOutcome(Action.FAIL, end, exc_text=f"could not start the process: {error}")
        code = None if status is None else os.waitstatus_to_exitcode(status)
        parsed = None
        if result is not None:
            try:
                action_text, value_bytes, exc_text = pickle.loads(result)
            except Exception:
                if code == 0:
                    raise
                # cut off while it wrote it (killed): as if it had written nothing
            else:
                parsed = (str(action_text), value_bytes, exc_text)
        return self._decide(handle, end, code, parsed, output)

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

    def _request_terminate(self, handle: _ProcessHandle | _TemplateHandle, reason: str) -> None:
        with self._lock:
            if handle.term_reason is not None or handle.reaped:
                return
            handle.term_reason = reason
        self._wake()

    def _close_pipe(self) -> None:
        """Release the watcher's wake-up pipe as it exits (called under the lock)."""
        for end in (self._wake_r, self._wake_w):
            if end is not None:
                end.close()
        self._wake_r = self._wake_w = None
        self._wake_pending = False

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

    def _watch(self) -> None:
        while True:
            with self._lock:
                if not self._children:
                    self._watcher = None
                    self._close_pipe()
                    self._remove_folder()
                    self._idle.set()
                    return
                handles = list(self._children.values())
                wake_r = self._wake_r
            assert wake_r is not None  # created with the watcher, closed as it exits
            timeout = self._act_on_deadlines(handles)
            sentinels = [h.process.sentinel for h in handles]
            ready = multiprocessing.connection.wait([wake_r, *sentinels], timeout)
            if wake_r in ready:
                with self._lock:
                    while wake_r.poll():
                        wake_r.recv_bytes()
                    self._wake_pending = False
            for sentinel in ready:
                if sentinel is wake_r:
                    continue
                with self._lock:
                    handle = self._children.get(sentinel)
                if handle is None:
                    continue
                popen = getattr(handle.process, "_popen", None)
                # What came may be its pid: read it; its end comes next (or has come).
                if isinstance(popen, _PipelinedPopen) and not handle.noted:
                    # What came may be its pid: read it, record it for the orphan sweep;
                    # its end comes next (or has come).
                    pid_was_known = popen.pid_known
                    pid = popen.pid
                    handle.noted = True
                    note_child(handle.workdir, pid)
                    if not pid_was_known and pid is not None:
                        continue
                with self._lock:
                    handle = self._children.pop(sentinel, None)
                    if handle is not None:
                        handle.reaped = True
                if handle is not None:
                    self._finish(handle)

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

    def _finish(self, handle: _ProcessHandle) -> None:
        try:
            outcome = self._outcome(handle)
        except Exception:
            outcome = RunOutcome(
                Action.FAIL,
                self.clock.time(),
                exc_text="redengine_nb could not read the result of the "
                "process run:\n" + traceback.format_exc(),
            )
        finally:
            _remove_run_files(handle.workdir)
        try:
            handle.on_done(outcome)
        except Exception:
            log.exception("on_done of task %r raised", handle.spec.task_name)
        finally:
            handle.done.set()

    def _outcome(self, handle: _ProcessHandle) -> RunOutcome:
        process = handle.process
        process.join()
        end = self.clock.time()
        output = _read_tail(handle.workdir + _OUTPUT_FILE, handle.spec.output_limit)
        result = self._read_result(handle.workdir + _RESULT_FILE)
        code = process.exitcode
        try:
            process.close()
        except ValueError:
            pass
        return self._decide(handle, end, code, result, output)

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

    @staticmethod
    def _read_result(path: str) -> tuple[str, bytes | None, str | None] | None:
        try:
            with open(path, "rb") as file:
                data = pickle.load(file)
        except (OSError, EOFError, pickle.UnpicklingError):
            return None
        action_text, value_bytes, exc_text = data
        return str(action_text), value_bytes, exc_text


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


def _read_some(fd: int) -> bytes:
    """What the pipe ``fd`` holds now, up to 1 MiB (``b""`` at its end, or when a
    non-blocking pipe is empty)."""
    try:
        return os.read(fd, 1 << 20)
    except BlockingIOError:
        return b""


def _watch_template(
    ref: weakref.ref[ProcessExecutor],
    folder: str,
    started: list[_TemplateLink | BaseException],
    ready: threading.Event,
) -> None:
    """The watcher of a template: reads its reports, acts on deadlines, ends the template
    when its executor is shut down and idle, when the template ends on its own, or when
    the executor is garbage-collected without a shutdown (it holds no reference to the
    executor while it waits, so an executor dropped in a notebook does not keep a
    process alive for ever)."""
    executor: ProcessExecutor | None = ref()
    assert executor is not None  # the caller waits for ``ready`` holding it
    try:
        link = executor._spawn_template(folder)
        link.finalizer = weakref.finalize(executor, _poke, link)
        link.finalizer.atexit = False
    except BaseException as exc:
        started.append(exc)
        ready.set()
        return
    started.append(link)
    ready.set()
    selector = selectors.DefaultSelector()
    selector.register(link.report, selectors.EVENT_READ, "report")
    selector.register(link.wake_r, selectors.EVENT_READ, "wake")
    reader = FrameReader()
    lost = False
    try:
        while not lost:
            with executor._lock:
                if executor._closed and not executor._children:
                    break
                handles = list(executor._children.values())
            timeout = executor._act_on_deadlines(handles)
            handles = []
            executor = None  # no reference while waiting (see above)
            events = selector.select(timeout)
            executor = ref()
            if executor is None:
                break
            for key, _mask in events:
                if key.data == "wake":
                    with executor._lock:
                        while _read_some(link.wake_r):
                            pass
                        executor._wake_pending = False
                    continue
                data = _read_some(link.report)
                if not data:
                    lost = True  # the template ended (killed, or it failed)
                    break
                for message in reader.feed(data):
                    executor._on_report(message)
    except BaseException:  # never leave the runs without a watcher silently
        log.exception("the process watcher failed; its template is ended")
        lost = True
    finally:
        selector.close()
        if executor is not None:
            executor._end_template(link, lost)
        else:  # dropped without a shutdown: its runs (if any) end with the template
            link.closed = True
            os.close(link.control)
            link.proc.wait()
            for fd in (link.report, link.wake_r, link.wake_w):
                os.close(fd)


def _poke(link: _TemplateLink) -> None:
    """The executor of ``link`` was garbage-collected: wake its watcher."""
    try:
        os.write(link.wake_w, b"!")
    except OSError:
        pass
