"""The child side of a process run, and the pickling that gets its target there.

The parent pickles a run's target with cloudpickle (:func:`pickle_target`), replacing the
run's flag by a reference that the child resolves to its own event (which ``SIGTERM``
sets). :func:`child_main` is what the child process runs: it points its output at a file,
loads and calls the target, and writes the outcome to a file it renames into place. See
:mod:`.process` for the executor that starts children and reads what they leave.
"""

from __future__ import annotations

import functools
import io
import itertools
import os
import pickle
import signal
import struct
import sys
import threading
import traceback
from collections.abc import Iterator
from typing import Any

import cloudpickle

from ..errors import TaskInaction, TaskSetupError
from ..records import Action
from .base import RunFlag, RunSpec
from .tracebacks import user_traceback

__all__ = ["child_main", "child_termination_flag", "pickle_target", "run_in_child"]

_FLAG_ID = "redengine_nb:termination-flag"


# --------------------------------------------------------------------------- pickling


class _TargetPickler(cloudpickle.CloudPickler):  # type: ignore[misc]
    """cloudpickle, with the run's flag replaced by a reference the child resolves."""

    def __init__(self, file: io.BytesIO, flag: RunFlag) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._flag = flag
        self._event = flag.made_event()  # what TerminationFlag() gave the target, if used
        self.uses_flag = False

    def persistent_id(self, obj: Any) -> str | None:
        if obj is self._flag or (self._event is not None and obj is self._event):
            self.uses_flag = True
            return _FLAG_ID
        return None


def _dumps(obj: Any, flag: RunFlag) -> tuple[bytes, bool]:
    buffer = io.BytesIO()
    pickler = _TargetPickler(buffer, flag)
    pickler.dump(obj)
    return buffer.getvalue(), pickler.uses_flag


def _parts(obj: Any, depth: int = 0) -> Iterator[tuple[str, Any]]:
    """The pieces a callable carries with it, labelled for an error message."""
    if depth > 3:
        return
    if isinstance(obj, functools.partial):
        yield "the function", obj.func
        for i, arg in enumerate(obj.args):
            yield f"positional argument {i}", arg
        for key, value in obj.keywords.items():
            yield f"argument {key!r}", value
        return
    code = getattr(obj, "__code__", None)
    closure = getattr(obj, "__closure__", None)
    if code is not None and closure:
        for name, cell in zip(code.co_freevars, closure, strict=False):
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            yield f"closure variable {name!r}", value
    defaults = getattr(obj, "__defaults__", None) or ()
    for i, value in enumerate(defaults):
        yield f"default argument {i}", value
    kwdefaults = getattr(obj, "__kwdefaults__", None) or {}
    for key, value in kwdefaults.items():
        yield f"default of argument {key!r}", value
    globals_ = getattr(obj, "__globals__", None)
    if code is not None and globals_ is not None and obj.__module__ in ("__main__", None):
        # cloudpickle ships the globals of a __main__ (notebook) function by value.
        for name in code.co_names:
            if name in globals_:
                yield f"global {name!r}", globals_[name]
    bound_self = getattr(obj, "__self__", None)
    if bound_self is not None and not isinstance(bound_self, type(sys)):
        yield "the bound object", bound_self


def _culprit(obj: Any, flag: RunFlag, depth: int = 0) -> str | None:
    """Name the innermost part of ``obj`` that cannot be pickled, if one can be found."""
    for label, part in _parts(obj, depth):
        try:
            _dumps(part, flag)
        except Exception:
            inner = _culprit(part, flag, depth + 1)
            what = f"{label} ({type(part).__module__}.{type(part).__qualname__})"
            return f"{inner} in {what}" if inner else what
    return None


def pickle_target(spec: RunSpec) -> tuple[bytes, bool]:
    try:
        return _dumps(spec.target, spec.flag)
    except Exception as exc:
        culprit = _culprit(spec.target, spec.flag)
        what = culprit if culprit else "its function or arguments"
        raise TaskSetupError(
            f"task {spec.task_name!r} cannot run in a process: {what} cannot be pickled "
            f"({type(exc).__name__}: {exc}). Pass picklable values, create the object inside "
            "the task, or run it with execution='thread' or 'main'."
        ) from exc


# ------------------------------------------------------------------------ the child side

_CHILD_FLAG = threading.Event()


def child_termination_flag() -> threading.Event:
    """In a process run: the event that ``SIGTERM`` sets (the task's ``TerminationFlag()``)."""
    return _CHILD_FLAG


class _TargetUnpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        if pid == _FLAG_ID:
            return _CHILD_FLAG
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")


def _redirect_output(fd: int) -> None:
    """Point fds 1 and 2 (and ``sys.stdout``/``sys.stderr``) at the file open on ``fd``
    (and close ``fd``), unbuffered."""
    _flush_output()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = io.TextIOWrapper(
        io.FileIO(1, "w", closefd=False),
        encoding="utf-8",
        errors="backslashreplace",
        write_through=True,
    )
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False),
        encoding="utf-8",
        errors="backslashreplace",
        write_through=True,
    )


def _write_result(path: str, action: Action, value: bytes | None, exc_text: str | None) -> None:
    temp = path + ".tmp"
    with open(temp, "wb") as file:
        pickle.dump((action.value, value, exc_text), file, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(temp, path)


_PR_SET_PDEATHSIG = 1


def _die_with_parent(scheduler: str | None) -> None:
    """Ask Linux for ``SIGKILL`` when this child's parent (the forkserver) ends; then, if
    the scheduler ``scheduler`` (an owner token) is gone already, end now."""
    if scheduler is None or not sys.platform.startswith("linux"):
        return
    # The forkserver outlives the scheduler while any process holds the write end of its
    # "alive" pipe, and it hands that end to every child it forks. This child has no use
    # for it (a forkserver it needs itself is started anew), so it lets go of it.
    import multiprocessing.forkserver as mp_forkserver

    server: Any = mp_forkserver._forkserver
    alive_fd = getattr(server, "_forkserver_alive_fd", None)
    if alive_fd is not None and getattr(server, "_forkserver_pid", None) is None:
        try:
            os.close(alive_fd)
        except OSError:
            pass
        server._forkserver_alive_fd = None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no prctl here: the restart check still guards
        return

    from ..runlog.owner import owner_alive

    if not owner_alive(scheduler):
        os._exit(1)


def _call(
    payload: bytes, uses_flag: bool, imported: list[str] | None = None
) -> tuple[Action, bytes | None, str | None]:
    """Load the target, call it: (action, cloudpickled return value, traceback text).
    ``imported`` gets the names of the modules that loading the target imported."""
    if uses_flag:
        signal.signal(signal.SIGTERM, lambda signum, frame: _CHILD_FLAG.set())
    action, value, exc_text = Action.SUCCESS, None, None
    try:
        known = len(sys.modules)
        threads = threading.active_count()
        target = _TargetUnpickler(io.BytesIO(payload)).load()
        # Not when importing them started a thread: the template would then fork every
        # later child from a threaded process (a lock that thread held stays held).
        if imported is not None and threading.active_count() == threads:
            imported.extend(itertools.islice(sys.modules, known, None))
    except BaseException:
        action = Action.FAIL
        exc_text = "could not load the task in the child process:\n" + traceback.format_exc()
    else:
        try:
            result = target()
        except TaskInaction:
            action = Action.INACTION
        except BaseException as exc:
            action = Action.FAIL
            exc_text = user_traceback(exc)
        else:
            if result is not None:  # None travels as no bytes
                try:
                    value = cloudpickle.dumps(result)
                except Exception as exc:
                    action = Action.FAIL
                    exc_text = (
                        f"the task's return value ({type(result).__module__}."
                        f"{type(result).__qualname__}) cannot be pickled to send it back to "
                        f"the scheduler: {type(exc).__name__}: {exc}"
                    )
    _flush_output()
    return action, value, exc_text


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def child_main(
    payload: bytes,
    uses_flag: bool,
    out_path: str,
    result_path: str,
    scheduler: str | None = None,
) -> None:
    """Entry point of a ``forkserver``/``spawn`` child process (``scheduler``: the owner
    token of the scheduler it must not outlive; see :mod:`redengine_nb.executors.process`)."""
    _die_with_parent(scheduler)
    _redirect_output(os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    me = os.getpid()
    action, value, exc_text = _call(payload, uses_flag)
    if os.getpid() == me:  # not a copy the target forked (see run_in_child)
        _write_result(result_path, action, value, exc_text)


# ----------------------------------------------------- a child of the template process


_NAMES_SIZE = struct.Struct("!I")


def run_in_child(payload: bytes, uses_flag: bool, result_w: int) -> int:
    """A child forked by the template process (its output already on its file): run the
    target, write on the pipe ``result_w`` the names of the modules loading it imported
    (for the template to import once: see :func:`split_result`) and the outcome; return
    the exit status to use."""
    imported: list[str] = []
    me = os.getpid()
    action, value, exc_text = _call(payload, uses_flag, imported)
    if os.getpid() != me:
        # A copy the target forked (os.fork() without exec) returned from it too: it is
        # not the run. Its outcome would be mixed with, or taken for, the run's own.
        _flush_output()
        return 0
    names = "\n".join(imported).encode("utf-8", errors="replace")
    outcome = pickle.dumps((action.value, value, exc_text), protocol=pickle.HIGHEST_PROTOCOL)
    data = _NAMES_SIZE.pack(len(names)) + names + outcome
    view = memoryview(data)
    while view:
        view = view[os.write(result_w, view) :]
    os.close(result_w)
    # As multiprocessing does: the threads the task started (not daemons) end first.
    shutdown: Any = getattr(threading, "_shutdown", None)
    if shutdown is not None and threading.active_count() > 1:
        shutdown()
    _flush_output()
    return 0


def split_result(data: bytes) -> tuple[list[str], bytes | None]:
    """What :func:`run_in_child` wrote: (module names, the pickled outcome or ``None`` if
    the child ended before it had written it all)."""
    if len(data) < _NAMES_SIZE.size:
        return [], None
    (size,) = _NAMES_SIZE.unpack_from(data)
    names = data[_NAMES_SIZE.size : _NAMES_SIZE.size + size]
    outcome = data[_NAMES_SIZE.size + size :]
    modules = names.decode("utf-8", errors="replace").split("\n") if names else []
    return modules, outcome or None
