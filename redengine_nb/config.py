"""The app's configuration: every option, its default, and validation on every assignment.

``Config`` behaves like a small record: ``config.task_execution``, ``config.timeout = '1
hour'``. An unknown key or a value outside the allowed ones raises :class:`ConfigError`
naming the key, what is accepted and, for a misspelled key, the closest option.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .clock import get_zone
from .errors import ConfigError
from .timetext import DURATION_HELP, to_timedelta

__all__ = ["OPTIONS", "Config"]


@dataclass(frozen=True, slots=True)
class _Option:
    default: Callable[[], Any]
    check: Callable[[str, Any], Any]
    help: str


def _choice(*allowed: str) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        if value not in allowed:
            raise ConfigError(
                f"bad value {value!r} for config {key!r}; allowed: "
                + ", ".join(repr(a) for a in allowed)
            )
        return value

    return check


def _bool(key: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise ConfigError(f"bad value {value!r} for config {key!r}; allowed: True, False")
    return value


def _positive_int(key: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"bad value {value!r} for config {key!r}; expected an integer ≥ 1")
    return value


def _optional_positive_int(key: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"bad value {value!r} for config {key!r}; expected None or an integer ≥ 1"
        )
    return value


def _dask_address(key: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or " " in value.strip():
        raise ConfigError(
            f"bad value {value!r} for config {key!r}; expected None (a LocalCluster started "
            "on first use) or a Dask scheduler address such as 'tcp://10.0.0.5:8786'"
        )
    return value.strip()


def _timeout(key: str, value: Any) -> Any:
    if value is None:
        return None
    try:
        seconds = to_timedelta(value).total_seconds()
    except ValueError:
        raise ConfigError(
            f"bad value {value!r} for config {key!r}; expected None, {DURATION_HELP}, "
            "a number of seconds or a timedelta"
        ) from None
    if seconds <= 0:
        raise ConfigError(f"bad value {value!r} for config {key!r}; a timeout must be positive")
    return seconds


def _retention(key: str, value: Any) -> Any:
    """``None``, or ``(max_age_seconds | None, max_runs | None)`` from text like
    ``'30 days'``, ``'1000 runs'`` or ``'30 days, 1000 runs'`` (or such a tuple)."""
    if value is None:
        return None
    if isinstance(value, tuple) and len(value) == 2:
        given_age, given_runs = value
        parts = [] if given_age is None else [f"{float(given_age)} seconds"]
        if given_runs is not None:
            parts.append(f"{given_runs} runs")
        value = ", ".join(parts)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"bad value {value!r} for config {key!r}; expected None, an age "
            f"({DURATION_HELP}), 'N runs', or both separated by a comma"
        )
    age: float | None = None
    runs: int | None = None
    for part in value.split(","):
        text = part.strip()
        words = text.split()
        if len(words) == 2 and words[1] in ("run", "runs") and words[0].isdigit():
            if runs is not None or int(words[0]) < 1:
                raise ConfigError(f"bad value {value!r} for config {key!r}: give one count ≥ 1")
            runs = int(words[0])
            continue
        try:
            seconds = to_timedelta(text).total_seconds()
        except ValueError:
            raise ConfigError(
                f"bad value {value!r} for config {key!r}: {text!r} is neither an age "
                f"({DURATION_HELP}) nor 'N runs'"
            ) from None
        if age is not None or seconds <= 0:
            raise ConfigError(f"bad value {value!r} for config {key!r}: give one positive age")
        age = seconds
    return (age, runs)


def _timezone(key: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str):
        value = getattr(value, "key", value)
    try:
        get_zone(str(value))
    except ValueError as exc:
        raise ConfigError(f"bad value {value!r} for config {key!r}: {exc}") from None
    return str(value)


def _any(key: str, value: Any) -> Any:
    return value


#: Every option: default, validator, one line of help (docs/engine.md has the long form).
OPTIONS: dict[str, _Option] = {
    "task_execution": _Option(
        lambda: "process",
        _choice("process", "thread", "main", "dask"),
        "where a task runs unless it says otherwise",
    ),
    "task_pre_exist": _Option(
        lambda: "raise",
        _choice("raise", "rename", "ignore", "replace"),
        "what adding a task whose name exists does",
    ),
    "force_status_from_logs": _Option(
        lambda: True, _bool, "read status and last_* times from the run log at every check"
    ),
    "silence_task_prerun": _Option(
        lambda: False, _bool, "log errors while starting a task as its failure and go on"
    ),
    "silence_cond_check": _Option(
        lambda: False, _bool, "count errors while checking a condition as false and go on"
    ),
    "max_process_count": _Option(
        lambda: os.cpu_count() or 1, _positive_int, "most process runs alive at once"
    ),
    "dask_address": _Option(
        lambda: None, _dask_address, "Dask scheduler address (None: a LocalCluster on first use)"
    ),
    "dask_max_runs": _Option(
        lambda: None, _optional_positive_int, "most dask runs submitted at once (None: no limit)"
    ),
    "restarting": _Option(
        lambda: "replace",
        _choice("replace", "relaunch", "fresh", "recall"),
        "what session.restart() does",
    ),
    "timeout": _Option(lambda: None, _timeout, "default task timeout (seconds once set)"),
    "timezone": _Option(lambda: None, _timezone, "IANA timezone name (None: the clock's)"),
    "shut_cond": _Option(lambda: None, _any, "a condition; when true the scheduler shuts down"),
    "lease_ttl": _Option(
        lambda: 30.0,
        _timeout,
        "seconds a scheduler's lease on the run log lives unrenewed (heartbeat: a third)",
    ),
    "shutdown_timeout": _Option(
        lambda: None,
        _timeout,
        "seconds a shut down waits for running tasks before it terminates them (None: no limit)",
    ),
    "clock_step_tolerance": _Option(
        lambda: 300.0,
        _timeout,
        "a backward clock step larger than this (seconds) is reported, and records from "
        "further in the future no longer count as done",
    ),
    "log_retention": _Option(
        lambda: None,
        _retention,
        "delete ended runs older than an age and/or beyond a count per task: "
        "'30 days', '1000 runs' or '30 days, 1000 runs' (None: keep everything)",
    ),
    "instant_shutdown": _Option(
        lambda: False, _bool, "terminate running tasks on shut down instead of waiting"
    ),
    "in_kernel": _Option(
        lambda: False, _bool, "set by the notebook layer: the session lives in a kernel"
    ),
}


class Config:
    """Validated configuration; reads like a mapping too (``dict(config)`` works)."""

    # Every option is a slot: reading one (on every launch) is a plain attribute lookup.
    __slots__ = ("_cond_check", "_listeners", *OPTIONS)

    def __init__(self, values: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        for k, o in OPTIONS.items():
            self._put(k, o.default())
        object.__setattr__(self, "_listeners", [])
        object.__setattr__(self, "_cond_check", None)
        merged = {**(values or {}), **kwargs}
        for key in merged:
            self._key(key)
        # in_kernel first: it constrains restarting.
        if "in_kernel" in merged:
            self._set("in_kernel", merged["in_kernel"])
        for key, value in merged.items():
            if key != "in_kernel":
                self._set(key, value)

    # -- hooks the app installs -------------------------------------------------------
    def set_condition_checker(self, check: Callable[[Any], Any]) -> None:
        """Install the parser that validates ``shut_cond`` (text → condition)."""
        object.__setattr__(self, "_cond_check", check)
        if self.shut_cond is not None:
            self._put("shut_cond", self._checked_shut_cond(self.shut_cond))

    def on_change(self, callback: Callable[[str, Any], None]) -> None:
        self._listeners.append(callback)

    # -- access ----------------------------------------------------------------------
    @staticmethod
    def _key(key: str) -> str:
        if key not in OPTIONS:
            close = difflib.get_close_matches(key, list(OPTIONS), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown config key {key!r}{hint} Known keys: " + ", ".join(OPTIONS))
        return key

    def _checked_shut_cond(self, value: Any) -> Any:
        assert self._cond_check is not None
        try:
            return self._cond_check(value)
        except ValueError as exc:
            raise ConfigError(f"bad value for config 'shut_cond': {exc}") from exc

    def _set(self, key: str, value: Any) -> None:
        self._key(key)
        value = OPTIONS[key].check(key, value)
        if key == "shut_cond" and value is not None and self._cond_check is not None:
            value = self._checked_shut_cond(value)
        in_kernel = value if key == "in_kernel" else self.in_kernel
        restarting = value if key == "restarting" else self.restarting
        if in_kernel and restarting != "recall":
            if key == "in_kernel":
                restarting = "recall"
                self._put("restarting", "recall")
            else:
                raise ConfigError(
                    f"restarting={restarting!r} is not possible inside a Jupyter kernel: "
                    "'replace', 'relaunch' and 'fresh' end this process, and the kernel with "
                    "it. Only 'recall' (stop and start the scheduler thread) keeps the "
                    "kernel alive."
                )
        self._put(key, value)
        for listener in list(self._listeners):
            listener(key, value)

    def _put(self, key: str, value: Any) -> None:
        object.__setattr__(self, key, value)

    def __getattr__(self, key: str) -> Any:  # reached only for a name that is no option
        if key.startswith("_"):
            raise AttributeError(key)
        return getattr(self, self._key(key))

    def __setattr__(self, key: str, value: Any) -> None:
        self._set(key, value)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, self._key(key))

    def __setitem__(self, key: str, value: Any) -> None:
        self._set(key, value)

    def update(self, values: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        for key, value in {**(values or {}), **kwargs}.items():
            self._set(key, value)

    def __iter__(self) -> Iterator[str]:
        return iter(list(OPTIONS))

    def keys(self) -> list[str]:
        return list(OPTIONS)

    def as_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in OPTIONS}

    def __dir__(self) -> list[str]:
        return [*OPTIONS, "as_dict", "keys", "update"]

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"Config({body})"
