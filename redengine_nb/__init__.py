"""redengine_nb: a condition-driven task scheduler that lives inside a Jupyter kernel.

``from redengine_nb import RedEngine`` is the entry point; ``%load_ext redengine_nb`` the
notebook's. Importing this package is cheap: the engine loads on first use, and IPython or
ipywidgets only with the notebook layer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    CommandFailed,
    ConditionParseError,
    ConfigError,
    RedEngineError,
    RunLogError,
    SchedulerError,
    TaskExistsError,
    TaskInaction,
    TaskSetupError,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "CommandFailed",
    "ConditionParseError",
    "ConfigError",
    "RedEngine",
    "RedEngineError",
    "RunLogError",
    "SchedulerError",
    "TaskExistsError",
    "TaskInaction",
    "TaskSetupError",
    "__version__",
    "load_ipython_extension",
    "panel",
    "unload_ipython_extension",
]

_LAZY = {
    "RedEngine": ("redengine_nb.app", "RedEngine"),
    "load_ipython_extension": ("redengine_nb.notebook", "load_ipython_extension"),
    "unload_ipython_extension": ("redengine_nb.notebook", "unload_ipython_extension"),
    "panel": ("redengine_nb.notebook", "panel"),
}

if TYPE_CHECKING:
    from .app import RedEngine


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'redengine_nb' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
