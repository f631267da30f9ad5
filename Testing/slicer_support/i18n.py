"""Stand-in for ``slicer.i18n`` (Slicer ``Base/Python/slicer/i18n.py``), which slicer-core does not ship.

As there: ``translate(context, text)`` asks ``slicer.app.translate`` and returns the text unchanged when there
is no application (or it cannot translate); ``tr(text)`` (imported as ``_``) takes the context from the
caller's file name (``Package.File`` when the folder has an ``__init__.py``, else ``File``) and refuses a
translation whose ``{placeholders}`` differ from the source text's.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import types

_PLACEHOLDER = re.compile(r"(?<!\{)\{([^\{\}]+)\}(?!\})")


def translate(context: str, text: str) -> str:
    import slicer

    app = getattr(slicer, "app", None)
    translator = getattr(app, "translate", None)
    return text if translator is None else translator(context, text)


def getContext(sourceFile: str) -> str:
    name = os.path.basename(sourceFile).replace(".py", "")
    folder = os.path.dirname(sourceFile)
    if os.path.isfile(sourceFile) and os.path.isfile(os.path.join(folder, "__init__.py")):
        return f"{os.path.basename(folder)}.{name}"
    return name


def tr(text: str) -> str:
    caller = sys._getframe(1)
    context = getContext(caller.f_code.co_filename)
    translated = translate(context, text)
    if set(_PLACEHOLDER.findall(text)) != set(_PLACEHOLDER.findall(translated)):
        logging.warning(f"In context '{context}', translation of '{text}' to '{translated}' is incorrect")
        return text
    return translated


def install() -> None:
    """Make ``from slicer.i18n import tr as _`` work."""
    import slicer

    module = types.ModuleType("slicer.i18n")
    module.translate, module.tr, module.getContext = translate, tr, getContext
    sys.modules["slicer.i18n"] = module
    slicer.i18n = module
