"""The Run panel with a super-resolution model: the card's output kind ``image`` makes the result a scalar volume
on its own, finer grid beside the input (PySide6 offscreen, real scene, real worker process, a tiny real model
trained by Testing/engine/test_super_resolution's recipe)."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import OBLIQUE, saveScreenshot

pytestmark = pytest.mark.gui
ENGINE_TESTS = Path(__file__).resolve().parents[1] / "engine"


@pytest.fixture(scope="module")
def upsamplerModel(tmp_path_factory):
    import json
    import sys

    sys.path.insert(0, str(ENGINE_TESTS))
    import test_super_resolution as recipe

    from deepmed.training.driver import train

    folder = tmp_path_factory.mktemp("upsampler")
    manifest = folder / "pairs.json"
    manifest.write_text(json.dumps({"name": "pairs", "training": recipe._write_pairs(folder, [0, 1, 2], [2, 2, 2])}))
    return train(manifest, folder / "model", app="superres", progress="none",
                 overrides=recipe.SETTINGS + ["training.epochs=2", "training.val_every=2"])


@pytest.fixture
def panel(openPanel, upsamplerModel, qtHarness):
    from DeepMedLib import ModelLibrary

    library = qtHarness.library
    shutil.copytree(upsamplerModel, library / "upsampler")
    opened = openPanel("DeepMedRun")
    ModelLibrary.changed.emit(str(library / "upsampler"))
    opened.ui.modelComboBox.setCurrentIndex([m.id for m in opened.panel.models].index("upsampler"))
    return opened


def test_the_upsampled_volume_lands_on_the_fine_grid_beside_the_input(panel, qtHarness, scene):
    import SimpleITK as sitk
    import slicer

    from deepmed.applications.demos.super_resolution import phantom
    from deepmed.transforms.resolution import fine_grid
    from DeepMedLib import SceneBridge
    from DeepMedLib.Geometry import ijkToRasFromImage, ijkToRasFromNode

    low = phantom(21, 20)
    low.SetSpacing((1.6, 1.2, 2.5))
    low.SetOrigin((-14.0, 30.5, 7.25))
    low.SetDirection(OBLIQUE)
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "low-res MR")
    SceneBridge.updateVolumeNodeFromImage(volume, low)
    volume.CreateDefaultDisplayNodes()
    ui = panel.ui
    assert panel.panel.inputSelectors[0].currentNode() is volume
    assert "Output: image on its own grid" in ui.modelDescriptionLabel.text() and ui.applyButton.isEnabled()
    ui.deviceComboBox.setCurrentText("cpu")
    ui.applyButton.click()
    qtHarness.processEventsUntil(lambda: panel.panel.run is None)
    assert qtHarness.messages == [], qtHarness.messages
    output = panel.panel.lastOutput
    assert ui.statusLabel.text() == f"Done: {output.GetName()}"
    assert output is not None and output.IsA("vtkMRMLScalarVolumeNode") and output is not volume
    expected = fine_grid(low, [2, 2, 2])
    assert output.GetImageData().GetDimensions() == (40, 40, 40)
    assert np.allclose(ijkToRasFromNode(output), ijkToRasFromImage(expected), atol=1e-6)  # spacing/origin/direction
    assert np.allclose(output.GetSpacing(), (0.8, 0.6, 1.25), atol=1e-9)
    values = slicer.util.arrayFromVolume(output)
    assert abs(values.mean() - sitk.GetArrayFromImage(low).mean()) < 0.05  # in the input's units
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert shNode.GetItemParent(shNode.GetItemByDataNode(output)) == shNode.GetItemParent(
        shNode.GetItemByDataNode(volume))
    saveScreenshot(panel.parent, "superres_panel")
