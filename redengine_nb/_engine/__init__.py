"""The engine: what a :class:`~redengine_nb.app.RedEngine` is made of inside (internal).

``session`` (the task registry and the parts it owns), ``step`` (what is due), ``launch``
(starting runs), ``ends`` (writing their ends), ``runner`` (the loop), ``restart`` (process
restarts), ``tasks`` (what a run calls) and ``commands`` (command tasks' runs). Nothing
here is a public import path: users reach it through ``app.py`` and ``args.py``.
"""
