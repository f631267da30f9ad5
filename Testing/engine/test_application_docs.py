"""docs/applications.md agrees with the code: its table of built-in applications (kind, target and output
kinds, key metric, ``task:`` keys) and the minimal runnable plug-in it shows."""

from __future__ import annotations

import re
from pathlib import Path

from deepmed.applications import (
    APPLICATIONS,
    RunnableApplication,
    TrainableApplication,
    get_application,
    trainable_application_names,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "applications.md"


def _table_rows() -> dict[str, list[str]]:
    text = DOC.read_text(encoding="utf-8")
    table = text[text.index("| application | kind |"):].split("\n\n")[0].splitlines()[2:]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in row.strip("|").split("|")] for row in table)}


def test_the_table_of_built_in_applications_is_the_registry():
    rows = _table_rows()
    built_in = [n for n in APPLICATIONS.names() if get_application(n).__module__.startswith("deepmed.")]
    assert sorted(rows) == sorted(built_in)
    for name, (kind, target, output, metric, task, _) in rows.items():
        application = get_application(name)
        assert output.split()[0] == application.output_kind, name
        if kind == "trainable":
            assert name in trainable_application_names(), name
            assert (target, metric) == (application.target_kind, application.key_metric), name
            keys = [] if task == "none" else [k.strip() for k in task.split(",")]
            assert keys == list(application.config_defaults), name
        else:
            assert kind == "runnable" and not isinstance(application, TrainableApplication), name


def test_the_minimal_runnable_plug_in_shown_is_the_tested_one():
    """The page's code block is the class that test_runnable_plugin.py runs (its members, its abstract set)."""
    text = DOC.read_text(encoding="utf-8")
    shown = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    tested = (Path(__file__).with_name("test_runnable_plugin.py")).read_text(encoding="utf-8")
    shown_methods = re.findall(r"def (\w+)\(", shown)
    assert sorted(shown_methods) == sorted(RunnableApplication.__abstractmethods__)
    assert len(TrainableApplication.__abstractmethods__) == 12 and "implements the twelve" in text
    for line in shown.splitlines():
        body = line.split("#")[0].strip()
        if body.startswith(("def ", "return", "output", "array", "networks", "mean", "with", "image")):
            assert body in tested, body
