"""Every user-visible text the Slicer modules set goes through Slicer's translation function (``_()`` =
``slicer.i18n.tr``, or ``translate(context, text)``), as Slicer's scripted-module template does: read from
the source (AST), so a label, tooltip, combo item, message box, dialog caption or file filter written as a
bare literal (or f-string) fails here. Also Slicer's rules for ``_()`` itself: a plain literal inside (no
f-string: ``lupdate`` cannot extract it and the translation could never match), and ``.format`` keywords
that are exactly the text's ``{placeholders}``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

MODULES = Path(__file__).resolve().parents[2] / "SlicerDeepMed" / "Modules"
#: the module files, their Lib packages and the shared DeepMedLib
SOURCES = sorted([*MODULES.glob("DeepMed*/DeepMed*.py"), *MODULES.glob("DeepMed*/DeepMed*Lib/*.py"),
                  *MODULES.glob("DeepMedLib/*.py")])
#: attributes whose assigned text the user reads
TEXT_ATTRIBUTES = {"text", "toolTip", "placeholderText", "title", "windowTitle", "statusTip", "whatsThis",
                   "noneDisplay", "nameFilters", "helpText", "acknowledgementText", "suffix", "prefix"}
#: calls whose arguments (all of them) the user reads
TEXT_CALLS = {"addItem", "addItems", "insertItem", "setText", "setToolTip", "setPlaceholderText", "setWindowTitle",
              "setTitle", "setHorizontalHeaderLabels", "setVerticalHeaderLabels", "addRow", "errorDisplay",
              "infoDisplay", "warningDisplay", "confirmOkCancelDisplay", "confirmYesNoDisplay",
              "tryWithErrorDisplay", "getOpenFileName", "getOpenFileNames", "getSaveFileName",
              "getExistingDirectory", "SetXAxisTitle", "SetYAxisTitle", "showStatusMessage"}
#: the panels' own helpers: argument positions / keywords that become tooltips, labels or 'none' entries
HELPER_ARGUMENTS = {"configureNodeSelector": ({3}, {"toolTip", "noneDisplay"}),
                    "volumeSelector": ({2}, {"toolTip", "noneDisplay"}),
                    "_spinBox": ({0, 4}, {"label", "toolTip"})}
TRANSLATORS = {"_", "tr", "translate"}
#: (file name, source line fragment) of deliberate exceptions; keep it short and say why
ALLOWED: set[tuple[str, str]] = set()
PLACEHOLDER = re.compile(r"(?<!\{)\{([^{}:!]+)[^{}]*\}(?!\})")


def _hasWords(text: str) -> bool:
    """Letters outside file patterns (" (*.zip)" has no words to translate) and ``{placeholders}``."""
    return any(character.isalpha() for character in re.sub(r"\*(\.\w+)?|\{[^{}]*\}", "", text))


def untranslated(node: ast.AST) -> bool:
    """True when ``node`` builds text from a literal with words that did not go through a translator."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and _hasWords(node.value)
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(part, ast.Constant) and _hasWords(str(part.value)) for part in node.values)
    if isinstance(node, ast.BinOp):
        return untranslated(node.left) or untranslated(node.right)
    if isinstance(node, ast.IfExp):
        return untranslated(node.body) or untranslated(node.orelse)
    if isinstance(node, ast.BoolOp):
        return any(untranslated(value) for value in node.values)
    if isinstance(node, (ast.List, ast.Tuple)):
        return any(untranslated(element) for element in node.elts)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return untranslated(node.func.value)  # "Done: {x}".format(...), "a" .strip(); _("...").format is fine
    return False


def _callName(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _sinkArguments(call: ast.Call) -> list[ast.AST]:
    name = _callName(call)
    if name in TEXT_CALLS:
        return [*call.args, *(keyword.value for keyword in call.keywords)]
    if name in HELPER_ARGUMENTS:
        positions, keywords = HELPER_ARGUMENTS[name]
        return [arg for index, arg in enumerate(call.args) if index in positions] + \
            [keyword.value for keyword in call.keywords if keyword.arg in keywords]
    return []


def _translatorProblems(call: ast.Call) -> list[str]:
    """``_(text)`` / ``translate(context, text)``: a plain literal; ``.format`` keywords = its placeholders."""
    name = _callName(call)
    if not isinstance(call.func, ast.Name) or name not in TRANSLATORS:
        return []
    texts = call.args[-1:] if name == "translate" else call.args[:1]
    if len(texts) != 1 or not (isinstance(texts[0], ast.Constant) and isinstance(texts[0].value, str)):
        return [f"{name}() of something else than a plain string literal (f-strings and expressions cannot be "
                "translated)"]
    return []


def _formatProblems(call: ast.Call) -> list[str]:
    func = call.func
    if not (isinstance(func, ast.Attribute) and func.attr == "format" and isinstance(func.value, ast.Call)
            and _callName(func.value) in TRANSLATORS and func.value.args
            and isinstance(func.value.args[-1], ast.Constant)):
        return []
    expected = set(PLACEHOLDER.findall(func.value.args[-1].value))
    given = {keyword.arg for keyword in call.keywords}
    if call.args or expected != given:
        return [f".format() of a translated text: placeholders {sorted(expected)}, keywords {sorted(given)} "
                "(named keywords only, as many as the text has)"]
    return []


def problems(source: str, fileName: str = "<source>") -> list[str]:
    """'file:line: what' for each user-visible text not translated, or translated the wrong way."""
    found = []
    lines = source.splitlines()

    def report(node: ast.AST, what: str) -> None:
        line = lines[node.lineno - 1].strip()
        if not any(fileName == allowedFile and fragment in line for allowedFile, fragment in ALLOWED):
            found.append(f"{fileName}:{node.lineno}: {what}: {line}")

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr in TEXT_ATTRIBUTES and untranslated(node.value):
                    report(node, f"'.{target.attr}' set to an untranslated text")
        elif isinstance(node, ast.Call):
            if any(untranslated(argument) for argument in _sinkArguments(node)):
                report(node, f"{_callName(node)}() given an untranslated text")
            for problem in _translatorProblems(node) + _formatProblems(node):
                report(node, problem)
    return found


def test_the_checker_finds_each_kind_of_untranslated_text():
    """The check itself can fail: each line below is one finding, the translated forms are none."""
    bad = '''
label.text = "Done"
label.toolTip = f"Running {model}..."
label.text = "Failed: " + message
combo.addItem(f"fold {fold} only")
combo.addItems(["scratch", name])
slicer.util.errorDisplay(f"The model failed:\\n{error}")
with slicer.util.tryWithErrorDisplay("Could not start."):
    pass
qt.QFileDialog.getOpenFileName(None, "Import", "", "Packages (*.zip)")
volumeSelector(scene, types, f"The {channel} volume")
configureNodeSelector(selector, scene, types, noneDisplay="Create new")
label.text = "Done: {node}".format(node=name)
label.text = _(f"Done: {node}")
label.text = _("Done: {node}").format(name=node)
box.nameFilters = ["Manifests (*.json)"]
'''
    good = '''
label.text = _("Done")
label.toolTip = _("Running {model}...").format(model=model)
label.text = _("Failed: {error}").format(error=message) + f" ({code})"
combo.addItem(f"{title} ({application})")
combo.addItems([_("scratch"), name])
slicer.util.errorDisplay(_("The model failed:\\n{error}").format(error=error))
qt.QFileDialog.getOpenFileName(None, _("Import"), "", _("Packages") + " (*.zip)")
configureNodeSelector(selector, scene, ["vtkMRMLSegmentationNode"], noneDisplay=_("Create new"))
self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation"), "DeepMed"]
self.delayDisplay("Training a tiny model")
progressBar.format = "%p%"
'''
    assert len(problems(bad)) == len(bad.strip().splitlines()) - 1  # the 'pass' line is no finding
    assert problems(good) == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_user_visible_texts_go_through_translation(path):
    assert len(SOURCES) >= 20, f"expected the modules' files under {MODULES}"
    found = problems(path.read_text(encoding="utf-8"), path.name)
    assert not found, "user-visible texts not through _() / translate():\n" + "\n".join(found)
