"""Process runs forked from a template process of our own (Linux): both of its sides.

The template is a clean, single-threaded interpreter, started once per
:class:`~redengine_nb.executors.process.ProcessExecutor` (at its first run) with
``subprocess`` -- never a ``fork()`` of the threaded scheduler. It imports the child side
(:mod:`.process_child`, and so cloudpickle) once, then loops on one ``selectors`` wait:

* a **run** message on its control pipe (its stdin: run number, the cloudpickled target,
  the output limit, and ``sys.path``/working folder when they changed) -> it makes the
  run's output file (an unnamed ``O_TMPFILE`` in the executor's folder) and result pipe,
  ``fork()`` s, opens the child's pidfd and reports the child's pid;
* a child's **result pipe** readable -> it keeps the bytes (a result larger than a pipe's
  buffer is read while the child writes it);
* a child's **pidfd** readable (``SIGCHLD`` through ``signal.set_wakeup_fd`` where Linux
  is older than 5.3) -> it reaps, reads the tail of the run's output (``output_limit``
  characters) and reports the exit status, the result and the output tail in one
  message on its report pipe (its stdout), which the executor's watcher thread reads
  (the reports of one round of the loop go in one write; the report pipe is
  non-blocking, so the template never stops reading its control pipe), then imports
  the modules the child said loading its target imported (see :meth:`_Template._warm`);
* a **kill** message -> it signals the child, unless it has reaped it already (so a
  signal never reaches a reused pid).

The child, before the task: ``PR_SET_PDEATHSIG`` (``SIGKILL`` when the template ends),
then checks that the template is still its parent; it closes the template's pipes, points
fds 0 at ``/dev/null`` and 1-2 at its output file, appends ``"<pid> <start>"`` to the
folder's ``children`` list (for the orphan sweep of the next start), loads and calls the
target and writes its outcome on its result pipe (:func:`.process_child.run_in_child`).
Nothing else: every page a child writes costs it a copy-on-write fault, which is most of
what a run costs (docs/performance.md, issue 15 item 2).

**The template dies with its scheduler**: its own ``PR_SET_PDEATHSIG`` (its parent is
the executor's watcher thread, which lives as long as the template), and end of file on
its control pipe (whose only write end is the scheduler's). Its children then get
``SIGKILL`` from theirs. It runs in its own process group, so a terminal's Ctrl-C reaches
the scheduler (which ends its runs) and not every child. The main module of the
scheduler is never imported here. Each child makes a process group of its own, so a
task that signals its group (a shell script's ``kill 0``) does not hit the template and
the other runs.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import io
import os
import pickle
import selectors
import signal
import struct
import sys
import threading
from typing import Any

from .process_child import run_in_child, split_result

__all__ = ["FrameReader", "frame", "template_main"]

_HEADER = struct.Struct("!I")
#: Name of the list of children (``"<pid> <start token>"`` a line) in the runs' folder.
CHILDREN_FILE = "children"
_PR_SET_PDEATHSIG = 1


def frame(message: Any) -> bytes:
    """One message as it travels on a pipe: its length, then its pickle."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


class FrameReader:
    """Cuts a byte stream into the messages :func:`frame` made."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        buffer = self._buffer
        buffer += data
        messages: list[Any] = []
        at = 0
        size = len(buffer)
        while size - at >= _HEADER.size:
            (length,) = _HEADER.unpack_from(buffer, at)
            end = at + _HEADER.size + length
            if end > size:
                break
            messages.append(pickle.loads(memoryview(buffer)[at + _HEADER.size : end]))
            at = end
        if at:
            del buffer[:at]
        return messages


_prctl: list[Any] = []  # libc's prctl, looked up once (a child calls it, forked warm)


def die_with_parent() -> bool:
    """``SIGKILL`` this process when its parent (thread) ends; ``False`` if not possible."""
    try:
        if not _prctl:
            import ctypes

            _prctl.append(ctypes.CDLL(None, use_errno=True).prctl)
        return bool(_prctl[0](_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def note_self(fd: int) -> None:
    """Append ``"<pid> <start token>"`` of this process to the runs' ``children`` list
    open on ``fd`` (``O_APPEND``: one ``write`` of a line is not mixed with another's).
    The token is :func:`redengine_nb.runlog.owner.start_token`'s (Linux: ``t<ticks>``),
    read here with bare system calls: a child pays for every Python object it touches
    (copy-on-write pages)."""
    try:
        stat = os.open("/proc/self/stat", os.O_RDONLY)
        try:
            raw = os.read(stat, 4096)
        finally:
            os.close(stat)
        fields = raw[raw.rfind(b")") + 2 :].split()
        os.write(fd, b"%d t%s\n" % (os.getpid(), fields[19]))
    except (OSError, IndexError):
        pass


# ----------------------------------------------------------------------- the template


class _Child:
    __slots__ = ("chunks", "ended", "limit", "out_fd", "pid", "pidfd", "result_r", "seq")

    def __init__(self, seq: int, pid: int, result_r: int, out_fd: int, limit: int) -> None:
        self.seq = seq
        self.pid = pid
        self.result_r: int | None = result_r
        self.out_fd = out_fd
        self.limit = limit
        self.chunks: list[bytes] = []
        self.pidfd: int | None = None
        self.ended = ("ended", self)  # the selector's tag of its pidfd


def _open_output(folder: str) -> int:
    """An unnamed file in ``folder`` for one run's output (named and unlinked at once
    where ``O_TMPFILE`` is not supported)."""
    flags = os.O_RDWR | os.O_CLOEXEC
    tmpfile = getattr(os, "O_TMPFILE", 0)
    if tmpfile:
        try:
            return os.open(folder, flags | tmpfile, 0o600)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
    path = os.path.join(folder, f"out-{os.getpid()}-{id(folder)}")
    fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
    os.unlink(path)
    return fd


def _read_tail(fd: int, limit: int) -> tuple[bool, bytes]:
    """(whether output was cut, the last ``4 * limit`` bytes at most) of a run's output."""
    size = os.fstat(fd).st_size
    if size == 0:
        return False, b""
    start = max(0, size - 4 * max(1, limit))  # at most 4 bytes per character
    return start > 0, os.pread(fd, size - start, start)


class _Template:
    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.pid = os.getpid()
        # fd 0 is the control pipe, fd 1 the report pipe: move them aside, so that
        # nothing printed here (or by a child before it redirects) lands in them.
        self.control = os.dup(0)
        self.report = os.dup(1)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(2, 1)
        os.close(devnull)
        os.set_blocking(self.report, False)
        os.set_inheritable(self.control, False)
        os.set_inheritable(self.report, False)
        self.children_fd = self._open_children()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.control, selectors.EVENT_READ, "control")
        # A child's end is seen on its pidfd (Linux 5.3): no SIGCHLD handler here, so a
        # child has no signal disposition to put back. Else through SIGCHLD.
        self.pidfds = hasattr(os, "pidfd_open")
        if self.pidfds:
            try:
                os.close(os.pidfd_open(os.getpid()))
            except OSError:
                self.pidfds = False
        self.wake: tuple[int, int] | None = None
        if not self.pidfds:
            self.wake = os.pipe()
            for fd in self.wake:
                os.set_blocking(fd, False)
            self.selector.register(self.wake[0], selectors.EVENT_READ, "sigchld")
        self.reader = FrameReader()
        self.outbox = bytearray()  # reports not yet taken by the scheduler's watcher
        self.by_pid: dict[int, _Child] = {}
        self.by_seq: dict[int, _Child] = {}
        self.cold: set[str] = set()  # modules that could not be imported here
        self.report_waits = False  # the report pipe is registered for writability

    # -- what the template's loop does

    def serve(self) -> None:
        note_self(self.children_fd)  # the sweep of a next start kills a left template too
        if self.wake is not None:
            signal.signal(signal.SIGCHLD, lambda signum, frame: None)
            signal.set_wakeup_fd(self.wake[1], warn_on_full_buffer=False)
        # Unbuffered text streams on fds 1 and 2, made once: a child only points the fds
        # at its output file, and print(), logging and raw writes keep their order.
        for fd, name in ((1, "stdout"), (2, "stderr")):
            stream = io.TextIOWrapper(
                io.FileIO(fd, "w", closefd=False),
                encoding="utf-8",
                errors="backslashreplace",
                write_through=True,
            )
            setattr(sys, name, stream)
        gc.collect()
        gc.freeze()  # what is here now is never collected: the children's pages stay shared
        while True:
            for key, _mask in self.selector.select():
                what = key.data
                if what.__class__ is tuple:
                    self._ended(what[1])
                elif what == "control":
                    self._read_control()
                elif what == "sigchld":
                    self._reap()
                elif what != "report":
                    self._read_result(what)
            if self.outbox:
                self._flush()  # the reports of one round in one write

    def _read_control(self) -> None:
        try:
            data = os.read(self.control, 1 << 20)
        except InterruptedError:  # pragma: no cover - retried by Python
            return
        if not data:
            # The scheduler is gone (or closed us): end. Children still running get
            # SIGKILL from PR_SET_PDEATHSIG as this process exits.
            os._exit(0)
        for message in self.reader.feed(data):
            kind = message[0]
            if kind == "run":
                self._start(*message[1:])
            elif kind == "kill":
                child = self.by_seq.get(message[1])
                if child is not None:
                    with contextlib.suppress(OSError):
                        os.kill(child.pid, message[2])

    def _start(
        self,
        seq: int,
        payload: bytes,
        uses_flag: bool,
        limit: int,
        env: tuple[list[str], str] | None,
    ) -> None:
        if env is not None:
            sys.path[:] = env[0]
            if env[1]:
                with contextlib.suppress(OSError):
                    os.chdir(env[1])
        try:
            try:
                out_fd = _open_output(self.folder)
            except FileNotFoundError:
                self._remake_folder()
                out_fd = _open_output(self.folder)
        except OSError as exc:
            self._send(("end", seq, None, None, False, b"", f"its output file: {exc}"))
            return
        # Whatever fails here (out of file descriptors, of memory) fails this run, not
        # the template and the runs it holds.
        try:
            result_r, result_w = os.pipe()
        except OSError as exc:
            os.close(out_fd)
            self._send(("end", seq, None, None, False, b"", f"its result pipe: {exc}"))
            return
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in (out_fd, result_r, result_w):
                os.close(fd)
            self._send(("end", seq, None, None, False, b"", f"fork() failed: {exc}"))
            return
        if pid == 0:  # the child: never returns
            self._child(payload, uses_flag, out_fd, result_w)
        os.close(result_w)
        pidfd = None
        if self.pidfds:
            try:
                pidfd = os.pidfd_open(pid)
            except OSError as exc:  # its end could not be seen: end it now
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                os.close(out_fd)
                os.close(result_r)
                self._send(("end", seq, None, None, False, b"", f"its pidfd: {exc}"))
                return
        os.set_blocking(result_r, False)
        child = _Child(seq, pid, result_r, out_fd, limit)
        self.by_pid[pid] = child
        self.by_seq[seq] = child
        self.selector.register(result_r, selectors.EVENT_READ, child)
        if pidfd is not None:
            child.pidfd = pidfd
            self.selector.register(pidfd, selectors.EVENT_READ, child.ended)
        self._send(("pid", seq, pid))

    def _remake_folder(self) -> None:
        """The runs' folder was removed under us (a temp cleaner, after days without a
        run): make it again, with the list of children the orphan sweep reads."""
        os.mkdir(self.folder, 0o700)
        fd = self._open_children()
        os.close(self.children_fd)
        self.children_fd = fd
        note_self(fd)

    def _open_children(self) -> int:
        return os.open(
            os.path.join(self.folder, CHILDREN_FILE),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
            0o600,
        )

    def _child(self, payload: bytes, uses_flag: bool, out_fd: int, result_w: int) -> None:
        code = 70
        try:
            die_with_parent()
            if os.getppid() != self.pid:
                os._exit(1)  # the template ended between the fork and the prctl
            # A process group of its own: a task that signals its group (a shell's
            # ``kill 0``) reaches its own processes, not the template and the other runs.
            os.setpgid(0, 0)
            if self.wake is not None:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.close(self.wake[0])
                os.close(self.wake[1])
            # The pipes to the scheduler. (The fds of the other children -- their result
            # pipes, output files, pidfds -- are close-on-exec and harmless here: closing
            # them one by one cost each child more than the rest of its start.)
            os.close(self.control)
            os.close(self.report)
            note_self(self.children_fd)
            os.close(self.children_fd)
            # sys.stdout and sys.stderr already write through to fds 1 and 2 (serve()).
            os.dup2(out_fd, 1)
            os.dup2(out_fd, 2)
            os.close(out_fd)
            code = run_in_child(payload, uses_flag, result_w)
        finally:
            os._exit(code)

    def _read_result(self, child: _Child) -> None:
        fd = child.result_r
        if fd is None:
            return
        try:
            data = os.read(fd, 1 << 20)
        except BlockingIOError:
            return
        if data:
            child.chunks.append(data)
        else:
            self._close_result(child)

    def _close_result(self, child: _Child) -> None:
        fd = child.result_r
        if fd is not None:
            self.selector.unregister(fd)
            os.close(fd)
            child.result_r = None

    def _ended(self, child: _Child) -> None:
        """The pidfd of ``child`` is readable: it has ended."""
        try:
            pid, status = os.waitpid(child.pid, os.WNOHANG)
        except ChildProcessError:  # pragma: no cover - only this loop reaps
            pid, status = child.pid, 255 << 8
        if pid == 0:
            return
        if child.pidfd is not None:
            self.selector.unregister(child.pidfd)
            os.close(child.pidfd)
            child.pidfd = None
        if self.by_pid.pop(pid, None) is not None:
            self._finish(child, status)

    def _reap(self) -> None:
        assert self.wake is not None
        with contextlib.suppress(OSError):
            while os.read(self.wake[0], 4096):
                pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.by_pid.pop(pid, None)
            if child is not None:
                self._finish(child, status)

    def _finish(self, child: _Child, status: int) -> None:
        """The child ended: its result (what it wrote before it ended), output tail."""
        self.by_seq.pop(child.seq, None)
        fd = child.result_r
        while fd is not None:
            try:
                data = os.read(fd, 1 << 20)
            except BlockingIOError:
                break  # a process the task started still holds the pipe: nothing more
            if not data:
                break
            child.chunks.append(data)
        self._close_result(child)
        try:
            cut, tail = _read_tail(child.out_fd, child.limit)
        except OSError:
            cut, tail = False, b""
        os.close(child.out_fd)
        modules, result = split_result(b"".join(child.chunks))
        self._send(("end", child.seq, status, result, cut, tail, None))
        if modules:
            self._warm(modules)

    def _warm(self, modules: list[str]) -> None:
        """Import the modules a run's target came from, so the next runs are forked with
        them loaded (a child importing them itself paid milliseconds on every run)."""
        fresh = [m for m in modules if m not in sys.modules and m not in self.cold]
        if not fresh:
            return
        import importlib

        for name in fresh:
            if name.startswith(("__main__", "__mp_main__")):
                continue
            try:
                importlib.import_module(name)
            except BaseException:  # an import error stays the child's business
                self.cold.add(name)  # not tried again
        if threading.active_count() > 1:  # pragma: no cover - depends on the module
            os.write(
                2,
                b"redengine_nb: a module imported in the process template started a "
                b"thread; forking a threaded process can deadlock its children\n",
            )
        gc.collect()
        gc.freeze()

    def _send(self, message: Any) -> None:
        """Queue a report: the loop writes a round's reports together."""
        self.outbox += frame(message)

    def _flush(self) -> None:
        """Write what the watcher can take now; wait for the pipe to be writable for the
        rest (the template never blocks on its reports: it must keep reading)."""
        while self.outbox:
            try:
                written = os.write(self.report, self.outbox)
            except BlockingIOError:
                break
            except BrokenPipeError:
                os._exit(0)  # the scheduler is gone
            del self.outbox[:written]
        if self.outbox and not self.report_waits:
            self.selector.register(self.report, selectors.EVENT_WRITE, "report")
            self.report_waits = True
        elif not self.outbox and self.report_waits:
            self.selector.unregister(self.report)
            self.report_waits = False


def template_main() -> None:
    """The template process: ``template_main()`` with argv ``[folder, scheduler pid]``."""
    folder, scheduler = sys.argv[1], int(sys.argv[2])
    die_with_parent()
    if os.getppid() != scheduler:
        sys.exit(1)  # the scheduler ended before the prctl
    assert threading.active_count() == 1, "the template must be single-threaded"
    _Template(folder).serve()
