"""The ``forkserver`` and ``spawn`` start paths of :class:`~.process.ProcessExecutor`
(multiprocessing; ``forkserver`` is the default elsewhere than Linux, where the platform
has it, see :mod:`.process` for what both paths share).

The forkserver imports the child side (:data:`PRELOAD`: this package's ``process_child``
and cloudpickle) once, so a child is forked warm; the output and result are files in the
executor's folder. Unlike plain ``multiprocessing``, the children do *not* re-import the
main module (see :func:`_skip_main_in_children`), so a script whose ``app.run()`` is not
under ``if __name__ == "__main__":`` does not start a scheduler inside each task.

**Children die with their scheduler** (the ``template`` path is described in
:mod:`.process_template`: the template asks for ``SIGKILL`` when the watcher thread that
started it ends -- that thread lives as long as the template -- and exits at the end of
file of its control pipe; each child asks for ``SIGKILL`` when the template ends, and
checks that the template is still its parent). Of the three ways to tie a child to its
scheduler -- Linux's ``PR_SET_PDEATHSIG``, a process group the scheduler kills, a
watchdog pipe the child reads -- only the first needs neither the scheduler alive at the
end (a group is killed by someone who still lives) nor the task's cooperation (a pipe
must be read by a thread of the child, which cannot run while the task holds the GIL in
a C call). So each child, first thing, asks the kernel (``prctl`` through :mod:`ctypes`)
for ``SIGKILL`` when its parent ends. Its parent is the forkserver, which exits when the
write ends of its "alive" pipe are all closed: the scheduler holds one, and
multiprocessing gives every child one too -- which the child closes, so that the
forkserver's life, and so the child's, ends with the scheduler's. The child then checks
that the scheduler is still alive (pid and start time), closing the window between its
fork and the ``prctl``. Elsewhere than Linux, and with ``spawn`` (where the parent is the
scheduler *thread* that started the child, whose end would kill it), this is not done;
the orphan sweep at the next start (:mod:`.process`) is then the only guard.

The watcher (:func:`watch_children`) waits on the children's sentinels and a wake-up pipe
(``multiprocessing.connection.wait``), with a timeout only when a deadline is pending; it
exits when no child is left.
"""

from __future__ import annotations

import functools
import io
import multiprocessing
import multiprocessing.connection
import multiprocessing.context as mp_context
import multiprocessing.forkserver as mp_forkserver
import multiprocessing.process as mp_process
import multiprocessing.spawn as mp_spawn
import multiprocessing.util as mp_util
import os
import pickle
import threading
import traceback
from collections.abc import Callable
from multiprocessing import popen_forkserver, reduction
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from ..errors import TaskSetupError
from ..records import Action
from ..runlog.owner import current_owner
from .base import RunHandle, RunOutcome, RunSpec
from .capture import TRUNCATED
from .orphans import note_child
from .process_child import child_main, pickle_target
from .process_handle import ProcessRunHandle

if TYPE_CHECKING:
    from .process import ProcessExecutor


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


class _ProcessHandle(ProcessRunHandle):
    """A live multiprocessing run. State changes happen on the watcher thread, under the
    lock."""

    def __init__(
        self,
        executor: ProcessExecutor,
        spec: RunSpec,
        on_done: Callable[[RunOutcome], None],
        process: BaseProcess,
        workdir: str,
    ) -> None:
        super().__init__(executor, spec, on_done)
        self.process = process
        self.workdir = workdir
        #: Its pid was recorded for the orphan sweep (see :func:`watch_children`).
        self.noted = False

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def _shown_pid(self) -> int | None:
        return self.pid


def start_in_child(
    executor: ProcessExecutor, spec: RunSpec, on_done: Callable[[RunOutcome], None]
) -> RunHandle:
    """Start ``spec`` in a multiprocessing child (``forkserver``, ``spawn``)."""
    payload, uses_flag = pickle_target(spec)
    folder = executor._run_folder()
    with executor._lock:
        executor._seq += 1
        workdir = os.path.join(folder, str(executor._seq))  # a prefix of the run's files
    out_path = workdir + _OUTPUT_FILE
    result_path = workdir + _RESULT_FILE
    # The child checks that this scheduler lives (see "Children die with ...").
    scheduler = current_owner() if executor.start_method == "forkserver" else None
    make = _TaskProcess if executor.start_method == "forkserver" else executor._ctx.Process
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
            f"task {spec.task_name!r}: could not start its process ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(getattr(process, "_popen", None), _PipelinedPopen):
        note_child(workdir, process.pid)  # else when the forkserver sends it (watch_children)
    handle = _ProcessHandle(executor, spec, on_done, process, workdir)
    with executor._lock:
        executor._children[process.sentinel] = handle
        executor._idle.clear()
        if executor._watcher is None:
            executor._wake_r, executor._wake_w = multiprocessing.Pipe(duplex=False)
            executor._wake_pending = False
            executor._watcher = threading.Thread(
                target=watch_children,
                args=(executor,),
                name="redengine-nb process watcher",
                daemon=True,
            )
            executor._watcher.start()
    if spec.flag.is_set():
        executor._request_terminate(handle, "terminated: its flag was set before it started")
    else:
        executor._hook_flag(handle)  # a set() from now on terminates it (at once if it was)
        executor._wake()
    return handle


def _close_wake_pipe(executor: ProcessExecutor) -> None:
    """Release the watcher's wake-up pipe as it exits (called under the lock)."""
    for end in (executor._wake_r, executor._wake_w):
        if end is not None:
            end.close()
    executor._wake_r = executor._wake_w = None
    executor._wake_pending = False


def watch_children(executor: ProcessExecutor) -> None:
    """The watcher of ``executor``'s multiprocessing children: reaps them, records their
    pids, acts on deadlines; exits when no child is left."""
    while True:
        with executor._lock:
            if not executor._children:
                executor._watcher = None
                _close_wake_pipe(executor)
                executor._remove_folder()
                executor._idle.set()
                return
            handles = list(executor._children.values())
            wake_r = executor._wake_r
        assert wake_r is not None  # created with the watcher, closed as it exits
        timeout = executor._act_on_deadlines(handles)
        sentinels = [h.process.sentinel for h in handles]
        ready = multiprocessing.connection.wait([wake_r, *sentinels], timeout)
        if wake_r in ready:
            with executor._lock:
                while wake_r.poll():
                    wake_r.recv_bytes()
                executor._wake_pending = False
        for sentinel in ready:
            if sentinel is wake_r:
                continue
            with executor._lock:
                handle = executor._children.get(sentinel)
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
            with executor._lock:
                handle = executor._children.pop(sentinel, None)
                if handle is not None:
                    handle.reaped = True
            if handle is not None:
                _finish(executor, handle)


def _finish(executor: ProcessExecutor, handle: _ProcessHandle) -> None:
    try:
        outcome = _outcome(executor, handle)
    except Exception:
        outcome = RunOutcome(
            Action.FAIL,
            executor.clock.time(),
            exc_text="redengine_nb could not read the result of the "
            "process run:\n" + traceback.format_exc(),
        )
    finally:
        _remove_run_files(handle.workdir)
    executor._report_outcome(handle, outcome)


def _outcome(executor: ProcessExecutor, handle: _ProcessHandle) -> RunOutcome:
    process = handle.process
    process.join()
    end = executor.clock.time()
    output = _read_tail(handle.workdir + _OUTPUT_FILE, handle.spec.output_limit)
    result = _read_result(handle.workdir + _RESULT_FILE)
    code = process.exitcode
    try:
        process.close()
    except ValueError:
        pass
    return executor._decide(handle, end, code, result, output)


def _read_result(path: str) -> tuple[str, bytes | None, str | None] | None:
    try:
        with open(path, "rb") as file:
            data = pickle.load(file)
    except (OSError, EOFError, pickle.UnpicklingError):
        return None
    action_text, value_bytes, exc_text = data
    return str(action_text), value_bytes, exc_text
