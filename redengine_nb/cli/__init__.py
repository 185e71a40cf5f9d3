"""``redengine-nb``: deploy a notebook headless (``serve``) and read its run log
(``status``, ``log``). ``main`` is the console script's entry point."""

from __future__ import annotations

from .serve import ServeError, format_run_line, log_status_rows, main, parse_config_pairs

__all__ = ["ServeError", "format_run_line", "log_status_rows", "main", "parse_config_pairs"]
