"""The ``template`` start path of :class:`~.process.ProcessExecutor` (the default on
Linux), the scheduler's side: starting the template process, sending it runs, and the
watcher reading its reports. :mod:`.process_template` is the template's side; what both
start paths share is in :mod:`.process`.

The template is a clean, single-threaded interpreter started once per executor at its
first run (``python -c`` importing :mod:`.process_template`, never a fork of the
scheduler), from the executor's watcher thread. Per run the scheduler writes one message
on its control pipe (run number, cloudpickled target, output limit, and ``sys.path`` /
working folder when they changed); the template forks, and reports on one pipe the
child's pid, then its exit status, its result and the tail of its output; the watcher
(:func:`watch_template`) reads that pipe. Nothing is pickled for multiprocessing, no
socket or file is made per run (the output goes to an unnamed ``O_TMPFILE``, the result
on a pipe), and the child runs no Python bootstrap. The modules a run's target came from
(a helper module, a notebook's imports pickled by reference) are imported by the template
after the first run that needed them, so later runs are forked with them loaded -- unless
loading them in the child started a thread (the template would then fork from a threaded
process; should one start a thread anyway, the template says so on stderr). Measured
(docs/performance.md, issue 15 item 2): a burst of process runs 143-168 -> 550-640 runs/s;
``start()`` 1.4-2 ms -> 40-120 µs of the scheduler thread. The template itself is idle
between runs (one ``select``) and is ended when the executor is shut down and idle.

The watcher waits on the template's report pipe and a wake-up pipe (``selectors``), with
a timeout only when a deadline is pending; it lives as long as the template.
"""

from __future__ import annotations

import logging
import os
import pickle
import selectors
import subprocess
import sys
import threading
import traceback
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import TaskSetupError
from ..records import Action
from .base import RunHandle, RunOutcome, RunSpec
from .capture import TRUNCATED
from .process_child import pickle_target
from .process_handle import ProcessRunHandle
from .process_template import FrameReader, frame

if TYPE_CHECKING:
    from .process import ProcessExecutor

log = logging.getLogger("redengine_nb.executors.process")


class _TemplateHandle(ProcessRunHandle):
    """A run forked by the template process (see :mod:`.process_template`). Its state
    changes happen on the watcher thread, under the executor's lock."""

    def __init__(
        self,
        executor: ProcessExecutor,
        spec: RunSpec,
        on_done: Callable[[RunOutcome], None],
        seq: int,
    ) -> None:
        super().__init__(executor, spec, on_done)
        self.seq = seq
        self._pid: int | None = None
        self.pid_known = threading.Event()  # set when the template reports it (or the end)
        #: The template it was sent to (its kill messages go there; it is lost with it).
        self.link: _TemplateLink | None = None

    @property
    def pid(self) -> int | None:
        """The child's pid (waits for the template to report it, a moment after start)."""
        self.pid_known.wait(_PID_GUARD)
        return self._pid

    def _shown_pid(self) -> int | None:
        return self._pid  # known or not: a repr never waits


#: Seconds ``handle.pid`` waits for the template's report at most (a guard, not a delay:
#: the report comes within milliseconds of the start).
_PID_GUARD = 60.0

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


def start_in_template(
    executor: ProcessExecutor, spec: RunSpec, on_done: Callable[[RunOutcome], None]
) -> RunHandle:
    payload, uses_flag = pickle_target(spec)  # a TaskSetupError before anything starts
    with executor._lock:
        executor._seq += 1
        seq = executor._seq
    handle = _TemplateHandle(executor, spec, on_done, seq)
    try:
        cwd = os.getcwd()
    except OSError:  # the working folder was removed: the template keeps its own
        cwd = ""
    env_now: tuple[list[str], str] = (list(sys.path), cwd)
    for attempt in (1, 2):
        link: _TemplateLink | None = None
        try:
            link = template_of(executor)
            with executor._lock:
                handle.link = link
                executor._children[seq] = handle  # before its reports can come
                executor._idle.clear()
            with executor._send_lock:
                # sys.path and the working folder, if this template lacks them
                env = None if env_now == link.sent_env else env_now
                link.send(frame(("run", seq, payload, uses_flag, spec.output_limit, env)))
                link.sent_env = env_now
        except Exception as exc:
            with executor._lock:
                mine = executor._children.pop(seq, None)
                if not executor._children:
                    executor._idle.set()
            if mine is None:  # the template ended meanwhile: the run was reported lost
                return handle
            if (
                attempt == 1
                and link is not None
                and isinstance(exc, BrokenPipeError)
                and not executor._closed
            ):
                # The template has died and its watcher has not seen it yet. Nothing
                # read this message (no read end is left), so no child was forked
                # for it: start the run on a fresh template rather than not at all.
                retire(executor, link)
                continue
            raise TaskSetupError(
                f"task {spec.task_name!r}: could not start its process "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        break
    if handle.deadline is not None:
        # its watcher counts from now (not from the template's first report about
        # it, which a stuck template never sends)
        executor._wake()
    if spec.flag.is_set():
        executor._request_terminate(handle, "terminated: its flag was set before it started")
    else:
        executor._hook_flag(handle)  # a set() from now on terminates it (at once if it was)
    return handle


def template_of(executor: ProcessExecutor) -> _TemplateLink:
    """The template process, started (with its watcher) if there is none."""
    link = executor._link
    if link is not None:
        return link
    with executor._link_lock:
        if executor._link is None:
            folder = executor._run_folder()
            started: list[_TemplateLink | BaseException] = []
            ready = threading.Event()
            watcher = threading.Thread(
                target=watch_template,
                args=(weakref.ref(executor), folder, started, ready),
                name="redengine-nb process watcher",
                daemon=True,
            )
            watcher.start()
            ready.wait()
            if isinstance(started[0], BaseException):
                raise started[0]
            with executor._lock:
                executor._watcher = watcher
                executor._link = started[0]
        assert executor._link is not None
        return executor._link


def retire(executor: ProcessExecutor, link: _TemplateLink) -> None:
    """``link``'s template is dead: the next run starts a new one. Its watcher still
    reports its runs lost when it sees the end of the report pipe."""
    with executor._link_lock, executor._lock:
        if executor._link is link:
            executor._link = None
            executor._watcher = None


def spawn_template(folder: str) -> _TemplateLink:
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


def end_template(executor: ProcessExecutor, link: _TemplateLink, lost: bool) -> None:
    if link.finalizer is not None:
        link.finalizer.detach()
    with executor._link_lock, executor._lock:
        if executor._link is link:
            executor._link = None
            executor._watcher = None
        executor._wake_pending = False
        orphans = []
        if lost:  # its runs (a newer template's, if one was started, live on)
            for key, handle in list(executor._children.items()):
                if handle.link is link:
                    orphans.append(handle)
                    del executor._children[key]
    with executor._send_lock:
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
        executor._report_outcome(
            handle,
            RunOutcome(
                Action.FAIL,
                executor.clock.time(),
                exc_text=f"process lost: {why} (exit status {status})",
            ),
        )
    with executor._lock:
        executor._remove_folder()
        if not executor._children:
            executor._idle.set()


def on_report(executor: ProcessExecutor, message: tuple[Any, ...]) -> None:
    kind, seq = message[0], message[1]
    with executor._lock:
        handle = executor._children.get(seq)
        if handle is None:
            return
        if kind == "pid":
            handle._pid = message[2]
            handle.pid_known.set()
            return
        del executor._children[seq]
        handle.reaped = True
    handle.pid_known.set()
    _kind, _seq, status, result, cut, tail, error = message
    try:
        outcome = template_outcome(executor, handle, status, result, cut, tail, error)
    except Exception:
        outcome = RunOutcome(
            Action.FAIL,
            executor.clock.time(),
            exc_text="redengine_nb could not read the result of the "
            "process run:\n" + traceback.format_exc(),
        )
    executor._report_outcome(handle, outcome)
    with executor._lock:
        if not executor._children:
            executor._idle.set()


def template_outcome(
    executor: ProcessExecutor,
    handle: _TemplateHandle,
    status: int | None,
    result: bytes | None,
    cut: bool,
    tail: bytes,
    error: str | None,
) -> RunOutcome:
    end = executor.clock.time()
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
    return executor._decide(handle, end, code, parsed, output)


def _read_some(fd: int) -> bytes:
    """What the pipe ``fd`` holds now, up to 1 MiB (``b""`` at its end, or when a
    non-blocking pipe is empty)."""
    try:
        return os.read(fd, 1 << 20)
    except BlockingIOError:
        return b""


def watch_template(
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
        link = spawn_template(folder)
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
                    on_report(executor, message)
    except BaseException:  # never leave the runs without a watcher silently
        log.exception("the process watcher failed; its template is ended")
        lost = True
    finally:
        selector.close()
        if executor is not None:
            end_template(executor, link, lost)
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
