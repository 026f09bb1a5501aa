"""The apps: what a person who does not code opens to rank (``labkit app NAME``).

Each app is a function that builds its page (an ``ipywidgets.VBox``) from :class:`AppView`: a
title, one line of instructions, the controls, the ranking widget, the current pick shown large and
a compact progress view. The notebooks under ``notebooks/apps/`` that Voilà serves are one cell
each, calling these functions; the lessons in ``notebooks/`` call them too for their "your turn"
part. Each app module is imported on its own (``from labkit.apps.digits import digits_app``), so a
kernel loads only what its app needs.
"""

from labkit.apps._view import AppView, limit_threads

__all__ = ["AppView", "limit_threads"]
