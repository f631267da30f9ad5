"""The Slicer extension's packaging: CMake lists every script and resource, the index entry is valid."""

import json
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULES = REPO / "SlicerDeepMed" / "Modules"
MODULE_NAMES = ["DeepMedData", "DeepMedTrain", "DeepMedRun", "DeepMedReview"]
SLICER_WIDGETS = {"ctkCollapsibleButton", "ctkPathLineEdit", "qMRMLNodeComboBox", "qMRMLWidget"}


def cmakeList(text: str, variable: str) -> list[str]:
    match = re.search(rf"set\({variable}\s+(.*?)\)", text, re.DOTALL)
    assert match, f"set({variable} ...) missing"
    return match.group(1).split()


def test_top_level_cmake_declares_the_extension():
    text = (REPO / "CMakeLists.txt").read_text()
    assert re.search(r"^project\(DeepMed\)$", text, re.MULTILINE)
    for variable in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert re.search(rf'set\(EXTENSION_{variable} "[^"]+"\)', text), f"EXTENSION_{variable} missing"
    assert 'set(EXTENSION_CATEGORY "Segmentation")' in text and 'set(EXTENSION_DEPENDS "PyTorch")' in text
    subdirectories = re.findall(r"add_subdirectory\((\S+)\)", text)
    assert subdirectories == ["SlicerDeepMed/Modules/DeepMedLib"] + [f"SlicerDeepMed/Modules/{m}" for m in MODULE_NAMES]
    for url in re.search(r'EXTENSION_SCREENSHOTURLS "([^"]+)"', text).group(1).split() + \
            [re.search(r'EXTENSION_ICONURL "([^"]+)"', text).group(1)]:
        assert (REPO / url.split("/main/", 1)[1]).is_file(), f"{url}: file not in the repository"
    assert "SlicerDeepMed/deepmed/*.py" in text  # the engine ships beside the modules
    assert "SlicerDeepMed/deepmed/*.json" in text  # with its schemas and catalogue (the one copy, in the package)


def test_supported_slicer_versions_are_stated_and_enforced():
    from DeepMedLib import Dependencies

    text = (REPO / "CMakeLists.txt").read_text()
    assert 'set(DEEPMED_MINIMUM_SLICER_VERSION "5.10")' in text and "Requires Slicer 5.10 or newer" in text
    readme = (REPO / "README.md").read_text()
    assert "**Supported: 3D Slicer 5.10 and newer** (Python 3.12)" in readme
    assert Dependencies.SUPPORTED_SLICER == "Slicer 5.10 or newer" and Dependencies.MINIMUM_PYTHON == (3, 11)
    assert "Check installation" in readme and "deepmed doctor" in readme


@pytest.mark.parametrize("module", MODULE_NAMES)
def test_module_cmake_lists_every_script_and_resource(module):
    folder = MODULES / module
    text = (folder / "CMakeLists.txt").read_text()
    scripts = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.py") if "__pycache__" not in p.parts)
    resources = sorted(str(p.relative_to(folder)) for p in (folder / "Resources").rglob("*") if p.is_file())
    assert sorted(cmakeList(text, "MODULE_PYTHON_SCRIPTS")) == scripts
    assert sorted(cmakeList(text, "MODULE_PYTHON_RESOURCES")) == resources
    assert "slicerMacroBuildScriptedModule(" in text
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    source = (folder / f"{module}.py").read_text()
    for cls in (module, f"{module}Widget", f"{module}Logic", f"{module}Test"):
        assert re.search(rf"^class {cls}\(", source, re.MULTILINE), f"{cls} missing in {module}.py"
    assert f'uiFile = "UI/{module}.ui"' in source  # loaded by DeepMedLib/ModuleWidget.py with resourcePath


def test_shared_lib_cmake_lists_every_script():
    folder = MODULES / "DeepMedLib"
    listed = cmakeList((folder / "CMakeLists.txt").read_text(), "DEEPMEDLIB_SCRIPTS")
    assert sorted(listed) == sorted(f"DeepMedLib/{p.name}" for p in folder.glob("*.py"))


@pytest.mark.parametrize("module", MODULE_NAMES)
def test_ui_files_use_only_qt_and_known_slicer_widgets(module):
    root = ElementTree.parse(MODULES / module / "Resources" / "UI" / f"{module}.ui").getroot()
    classes = {w.get("class") for w in root.iter("widget")}
    custom = {c.findtext("class") for c in root.iter("customwidget")}
    assert custom <= SLICER_WIDGETS and {c for c in classes if not c.startswith("Q")} <= custom
    names = [w.get("name") for w in root.iter("widget")]
    assert len(names) == len(set(names)), "duplicate object names"


def test_extensions_index_entry():
    raw = (REPO / "DeepMed.json").read_bytes()
    assert b"\r" not in raw, "DeepMed.json must have LF line endings"
    entry = json.loads(raw)
    assert entry["$schema"].startswith("https://raw.githubusercontent.com/Slicer/Slicer/")
    assert entry["category"] == "Segmentation" and entry["build_dependencies"] == ["PyTorch"]
    assert entry["scm_url"].endswith("/SlicerDeepMed.git") and entry["scm_revision"]


def test_module_files_leave_sys_path_alone():
    """Slicer puts each module's folder on sys.path; the installed extension has DeepMedLib and deepmed in
    the same qt-scripted-modules folder, and a developer checkout gets them from `make slicer-dev`."""
    offenders = [str(path.relative_to(REPO)) for path in (REPO / "SlicerDeepMed" / "Modules").rglob("*.py")
                 if "sys.path" in path.read_text(encoding="utf-8")]
    assert offenders == []


def test_slicer_dev_path_file_makes_the_shared_lib_importable(tmp_path):
    """The .pth line `make slicer-dev` writes into Slicer's site-packages is enough to import DeepMedLib."""
    import re
    import subprocess
    import sys

    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    line = re.search(r"p\.write_text\('\$\(CURDIR\)(/[^\\']+)", makefile).group(1)
    (tmp_path / "deepmed-slicer-modules.pth").write_text(str(REPO) + line + "\n")
    code = ("import site, sys; site.addsitedir(sys.argv[1]); import DeepMedLib.Signal as g; "
            "print(g.__file__)")
    out = subprocess.run([sys.executable, "-S", "-c", code, str(tmp_path)], capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin"})
    assert out.stdout.strip().startswith(str(REPO / "SlicerDeepMed" / "Modules" / "DeepMedLib"))
