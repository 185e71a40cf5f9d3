"""The notebook layer: ``%load_ext redengine_nb``, the magics, the kernel session, the panel.

Importing this package is cheap and does not import IPython or ipywidgets: the extension
entry points import :mod:`.magics` (IPython) when called, and :func:`panel` imports the
widget module (ipywidgets) when called.

In a notebook::

    %load_ext redengine_nb
    from redengine_nb.notebook import get_app
    app = get_app()                      # the session the magics use

    @app.task('every 10 minutes')
    def fetch(): ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..app import RedEngine

__all__ = [
    "get_app",
    "load_ipython_extension",
    "panel",
    "set_app",
    "unload_ipython_extension",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext redengine_nb``: start this kernel's scheduler and register the magics."""
    from . import kernel
    from .magics import SchedulerMagics, install_input_transformer

    kernel.activate(ipython)
    ipython.register_magics(SchedulerMagics(ipython, get_app))
    install_input_transformer(ipython)  # so that `%%task --help` alone in a cell answers


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext redengine_nb``: stop the scheduler thread (the tasks are kept)."""
    from . import kernel
    from .magics import uninstall_input_transformer

    kernel.deactivate(ipython)
    uninstall_input_transformer(ipython)


_served_app: RedEngine | None = None


def set_app(app: RedEngine | None) -> RedEngine | None:
    """Make :func:`get_app` return ``app`` outside a kernel (``redengine-nb serve`` does this
    so that a notebook's ``app = get_app()`` gets the served app); ``None`` undoes it.
    Returns the app set before."""
    global _served_app
    previous, _served_app = _served_app, app
    return previous


def get_app() -> RedEngine:
    """The app of this kernel's scheduler session; ``%load_ext redengine_nb`` first.

    Under ``redengine-nb serve``: the served app (see :func:`set_app`)."""
    if _served_app is not None:
        return _served_app
    from . import kernel

    return kernel.get_app()


def panel(session_or_app: Any = None, **kwargs: Any) -> Any:
    """The live ipywidgets panel of ``session_or_app`` (default: this kernel's session)."""
    from .widget import panel as make_panel

    return make_panel(session_or_app, **kwargs)
