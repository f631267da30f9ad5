"""The Run panel with models that are not segmenters: what the card declares (modes, conditions, output kind)
decides the inputs shown, the button's verb and the node the result becomes (PySide6 offscreen, real scene,
real worker process). The test application is the case-level plug-in of Testing/engine/test_plugin_application."""

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import saveScreenshot

from DeepMedLib.SelfTestData import syntheticCase

pytestmark = pytest.mark.gui
ENGINE_TESTS = Path(__file__).resolve().parents[1] / "engine"


@pytest.fixture(scope="module")
def levelModel(tmp_path_factory):
    """The plug-in's model (case-level value, table output), trained once."""
    import sys

    sys.path.insert(0, str(ENGINE_TESTS))
    import test_plugin_application as plugin

    from deepmed.training.driver import train

    folder = tmp_path_factory.mktemp("levels")
    manifest = plugin._write_dataset(folder)
    return train(manifest, folder / "model", app="mean_level", overrides=plugin.SETTINGS + ["task.width=6"],
                 progress="none")


@pytest.fixture
def panel(openPanel, levelModel, monkeypatch, qtHarness):
    from DeepMedLib import ModelLibrary

    monkeypatch.setenv("DEEPMED_PLUGINS", "test_plugin_application")  # the worker finds the plug-in
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ENGINE_TESTS), str(ENGINE_TESTS.parent),
                                                      os.environ.get("PYTHONPATH", "")]))
    library = qtHarness.library
    shutil.copytree(levelModel, library / "levels")
    opened = openPanel("DeepMedRun")
    ModelLibrary.changed.emit(str(library / "levels"))
    opened.ui.modelComboBox.setCurrentIndex([m.id for m in opened.panel.models].index("levels"))
    return opened


def test_a_case_level_model_writes_a_table_beside_the_input_and_shows_the_values(panel, qtHarness, scene):
    ui = panel.ui
    assert not ui.modeComboBox.isVisible() and ui.applyButton.text() == "Predict"
    volume, _ = syntheticCase(scene, seed=7, name="patient MR")
    assert ui.applyButton.isEnabled()
    ui.applyButton.click()
    qtHarness.processEventsUntil(lambda: panel.panel.run is None)
    assert qtHarness.messages == [], qtHarness.messages
    table = panel.panel.lastOutput
    assert table.IsA("vtkMRMLTableNode") and table.GetColumnName(0) == "value" and table.GetNumberOfRows() == 1
    value = float(table.GetCellText(0, 0))
    assert ui.resultLabel.text() == f"value: {value:.4g}" and not ui.resultLabel.isHidden()
    shNode = __import__("slicer").vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert shNode.GetItemParent(shNode.GetItemByDataNode(table)) == shNode.GetItemParent(
        shNode.GetItemByDataNode(volume))
    saveScreenshot(panel.parent, "run_panel_table")


def _withModes(levelsDir: Path) -> None:
    card = json.loads((levelsDir / "model_card.json").read_text())
    card["modes"] = [{"name": "predict", "output_kind": "table", "inputs": "images"},
                     {"name": "compare", "output_kind": "sequence", "inputs": "pair"},
                     {"name": "generate", "output_kind": "image", "inputs": "conditions"}]
    card["conditions"] = [{"name": "radius", "min": 2.0, "max": 10.0, "unit": "mm"}, {"name": "x"}]
    (levelsDir / "model_card.json").write_text(json.dumps(card))


def test_the_cards_modes_decide_the_inputs_and_the_command(panel, qtHarness, scene, monkeypatch):
    from DeepMedLib import ModelLibrary

    library = qtHarness.library
    _withModes(library / "levels")
    ModelLibrary.changed.emit(str(library / "levels"))
    ui = panel.ui
    assert ui.modeComboBox.isVisibleTo(panel.parent) and ui.modeComboBox.count() == 3
    assert len(panel.panel.inputSelectors) == 1
    ui.modeComboBox.setCurrentIndex(1)  # pair: two cases and the number of steps
    assert len(panel.panel.inputSelectors) == 2 and panel.panel.stepsBox is not None
    assert ui.applyButton.text() == "Predict" and not ui.applyButton.isEnabled()
    ui.modeComboBox.setCurrentIndex(2)  # conditions: no volume, one box per condition with its range
    assert panel.panel.inputSelectors == [] and len(panel.panel.conditionBoxes) == 2
    radius = panel.panel.conditionBoxes[0]
    assert (radius.minimum(), radius.maximum(), radius.value()) == (2.0, 10.0, 6.0)
    assert "trained on 2 to 10" in radius.toolTip()
    assert ui.applyButton.text() == "Generate" and ui.applyButton.isEnabled()
    radius.setValue(3.5)
    panel.panel.seedBox.setValue(42)
    started = []
    monkeypatch.setattr(panel.panel.logic.runner, "job",
                        lambda title, *arguments: started.append(arguments) or (_ for _ in ()).throw(
                            RuntimeError("stop here")))
    ui.applyButton.click()
    arguments = [str(a) for a in started[0]]
    assert arguments[arguments.index("--mode") + 1] == "generate"
    assert arguments[arguments.index("--condition") + 1] == "3.5,0.0"
    assert arguments[arguments.index("--seed") + 1] == "42"
    assert arguments[arguments.index("-o") + 1].endswith("output.nrrd")
    assert not any(a.startswith(str(Path(arguments[arguments.index("-o") + 1]).parent / "input")) for a in arguments)
    saveScreenshot(panel.parent, "run_panel_conditions")
