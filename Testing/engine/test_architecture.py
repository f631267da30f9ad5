"""The engine's layering: no import cycle between its packages or its modules (imports inside functions count
as much as those at the top: a lazy import is still a dependency), with no exemption for entry points;
training / inference / zoo independent of each other; no application named outside applications/."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "SlicerDeepMed" / "deepmed"


def _package(module: str) -> str:
    """The package (folder) a module belongs to, below ``deepmed``: ``deepmed.applications.demos.segmentation``
    -> ``applications.demos``; modules directly in ``deepmed`` (``__init__``, ``__main__``, ``errors``, ...)
    are their own node."""
    parts = module.split(".")[1:]
    if not parts or (len(parts) == 1 and not (ENGINE / parts[0]).is_dir()
                     and not (ENGINE / f"{parts[0]}.py").is_file()):
        return "__init__"  # ``deepmed`` itself, or a name it defines (``from deepmed import __version__``)
    if ENGINE.joinpath(*parts).is_dir():  # the package itself (its __init__)
        return ".".join(parts)
    return ".".join(parts[:-1]) if len(parts) > 1 else parts[0]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("deepmed"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("deepmed"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if node.module == "deepmed")
    return found


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ENGINE.rglob("*.py"):
        relative = path.relative_to(ENGINE.parent).with_suffix("")
        source = _package(".".join(relative.parts))
        targets = {_package(m) for m in _imports(path)} - {source, "__init__"}
        graph.setdefault(source, set()).update(targets)
    return graph


def module_graph() -> dict[str, set[str]]:
    """Module -> modules it imports (``from deepmed.x import y`` names module ``deepmed.x.y`` when it is one)."""
    modules = {".".join(p.relative_to(ENGINE.parent).with_suffix("").parts).removesuffix(".__init__"): p
               for p in ENGINE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.module in modules:
                subs = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
                targets.update(subs or {node.module})
        graph[name] = targets - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if state.get(target) is None and (found := visit(target)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if state.get(node) is None and (found := visit(node)):
            return found
    return None


def test_no_import_cycles_between_engine_packages():
    graph = package_graph()
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_no_import_cycles_between_engine_modules():
    graph = module_graph()
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_imports_inside_functions_count(tmp_path):
    source = tmp_path / "lazy.py"
    source.write_text("def f():\n    from deepmed.cli.main import main\n    import deepmed.zoo.library\n")
    assert _imports(source) == {"deepmed.cli.main", "deepmed.zoo.library"}
    assert {_package(m) for m in _imports(source)} == {"cli", "zoo"}


def test_only_the_entry_module_imports_the_cli():
    """The CLI parses and calls the engine; nothing in the engine (demos included) calls the CLI back."""
    importers = {source for source, targets in package_graph().items() if "cli" in targets}
    assert importers <= {"__main__"}, importers


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_training_inference_and_zoo_do_not_import_each_other():
    graph = package_graph()
    for package in ("training", "inference", "zoo"):
        others = {"training", "inference", "zoo"} - {package}
        assert not graph.get(package, set()) & others, f"{package} imports {graph[package] & others}"


#: Lines outside applications/ that may hold an application's name for another meaning.
NOT_AN_APPLICATION = {"data/manifest.py": "LABEL_TOKENS"}  # 'segmentation' as a token of label file names


def test_no_application_is_named_outside_applications():
    """The engine (trainer, driver, predictor, planner, losses, evaluation, zoo, CLI, demos) and the Slicer
    modules know no application by name: names appear only in applications/ (and the tests and docs). An
    application's losses, demo, default and importers' card names come from applications/."""
    from deepmed.applications import APPLICATIONS

    names = "|".join(APPLICATIONS.names())
    pattern = re.compile(rf"[\"']({names})[\"']")
    modules = ENGINE.parent / "Modules"
    files = [p for p in ENGINE.rglob("*.py") if "applications" not in p.relative_to(ENGINE).parts]
    files += [p for p in modules.rglob("*.py")] + [p for p in modules.rglob("*.ui")]
    offenders = []
    for path in files:
        relative = path.relative_to(ENGINE.parent).as_posix()
        allowed = NOT_AN_APPLICATION.get(path.relative_to(ENGINE).as_posix() if path.is_relative_to(ENGINE) else "")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line) and not (allowed and allowed in line):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_every_applications_demo_resolves():
    """``deepmed demo --app NAME`` imports ``module:function`` from the application's ``demo``."""
    import importlib

    from deepmed.applications import DEFAULT_APPLICATION, get_trainable_application, trainable_application_names

    demos = {name: get_trainable_application(name).demo for name in trainable_application_names()}
    assert demos[DEFAULT_APPLICATION], "make demo runs the default application's demo"
    for name, demo in demos.items():
        if demo:
            module, function = demo.split(":")
            assert callable(getattr(importlib.import_module(module), function)), name


def test_the_output_and_mode_vocabularies_agree_everywhere():
    """base.OUTPUT_KINDS / MODE_INPUTS are the one vocabulary: the card schema allows exactly them and the
    Slicer modules place every output kind in the scene."""
    import json
    import sys

    from deepmed.applications.base import MODE_INPUTS, OUTPUT_KINDS

    schema = json.loads((ENGINE / "zoo" / "schemas" / "model-card.schema.json").read_text(encoding="utf-8"))
    assert tuple(schema["$defs"]["output_kind"]["enum"]) == OUTPUT_KINDS
    assert tuple(schema["properties"]["modes"]["items"]["properties"]["inputs"]["enum"]) == MODE_INPUTS
    sys.path.insert(0, str(ENGINE.parent / "Modules"))
    from DeepMedLib import Outputs

    assert set(Outputs.NODE_CLASSES) == set(OUTPUT_KINDS)
