"""Applications from outside the engine: Python entry points of the group ``deepmed.applications`` (what an
installed package declares) and the modules named in ``$DEEPMED_PLUGINS`` (comma-separated; for a checkout).
Importing the module registers its application(s) with ``@APPLICATIONS.register``: a ``TrainableApplication``
(deepmed trains and runs it) or a ``RunnableApplication`` (deepmed only runs its models); see docs/applications.md."""

from __future__ import annotations

import importlib
import os
import sys
from importlib.metadata import entry_points

PLUGINS_VARIABLE = "DEEPMED_PLUGINS"
ENTRY_POINT_GROUP = "deepmed.applications"

#: plug-in -> why it did not load (named again when a model asks for an application nobody registered)
NOT_LOADED: dict[str, str] = {}


def load_plugins() -> list[str]:
    """Import every plug-in module once; a broken plug-in is named on stderr and skipped."""
    names = [n.strip() for n in os.environ.get(PLUGINS_VARIABLE, "").split(",") if n.strip()]
    loaded = []
    for name in names:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as exc:  # a plug-in must not take the engine down
            NOT_LOADED[name] = f"{type(exc).__name__}: {exc}"
            print(f"deepmed: warning: plug-in {name} ({PLUGINS_VARIABLE}) not loaded: {exc}", file=sys.stderr)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
            loaded.append(entry.value)
        except Exception as exc:
            NOT_LOADED[entry.value] = f"{type(exc).__name__}: {exc}"
            print(f"deepmed: warning: plug-in {entry.value} (entry point) not loaded: {exc}", file=sys.stderr)
    return loaded
