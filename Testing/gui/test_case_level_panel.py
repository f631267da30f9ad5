"""A classification model in the Run panel (PySide6 offscreen, real scene, real worker process): the predicted
class and its probabilities land in a table node beside the input and are written into the panel. The model is
the tiny cube-size classifier of Testing/engine/test_case_level.py."""

import shutil
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk
from conftest import saveScreenshot

pytestmark = pytest.mark.gui
ENGINE_TESTS = Path(__file__).resolve().parents[1] / "engine"


@pytest.fixture(scope="module")
def cubeClassifier(tmp_path_factory):
    sys.path.insert(0, str(ENGINE_TESTS))
    import test_case_level as cases

    from deepmed.training.driver import train

    folder = cases.write_cubes(tmp_path_factory.mktemp("cubes") / "data")
    model = train(folder / "classification.json", folder.parent / "model", app="classification",
                  overrides=[*cases.TINY, "training.epochs=6"], progress="none")
    return folder, model


def test_a_classifier_writes_its_class_and_probabilities_beside_the_input(openPanel, cubeClassifier, qtHarness,
                                                                         scene):

    import slicer

    from DeepMedLib import ModelLibrary, SceneBridge

    folder, model = cubeClassifier
    library = qtHarness.library
    shutil.copytree(model, library / "cube-size")
    opened = openPanel("DeepMedRun")
    ModelLibrary.changed.emit(str(library / "cube-size"))
    ui = opened.ui
    ui.modelComboBox.setCurrentIndex([m.id for m in opened.panel.models].index("cube-size"))
    assert ui.applyButton.text() == "Predict"
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "patient c09")
    SceneBridge.updateVolumeNodeFromImage(volume, sitk.ReadImage(str(folder / "c09.nii.gz")))  # a small cube
    volume.CreateDefaultDisplayNodes()
    assert ui.applyButton.isEnabled()
    ui.applyButton.click()
    qtHarness.processEventsUntil(lambda: opened.panel.run is None)
    assert qtHarness.messages == [], qtHarness.messages
    table = opened.panel.lastOutput
    assert table.IsA("vtkMRMLTableNode") and table.GetNumberOfRows() == 1
    columns = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    assert columns == ["class", "p_small", "p_large"] and table.GetCellText(0, 0) == "small"
    probabilities = [float(table.GetCellText(0, c)) for c in (1, 2)]
    assert probabilities[0] > 0.5 and sum(probabilities) == pytest.approx(1.0, abs=1e-4)
    assert ui.resultLabel.text().startswith("class: small, p_small: ") and not ui.resultLabel.isHidden()
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert shNode.GetItemParent(shNode.GetItemByDataNode(table)) == shNode.GetItemParent(
        shNode.GetItemByDataNode(volume))
    saveScreenshot(opened.parent, "classification_panel")
