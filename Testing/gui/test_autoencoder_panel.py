"""The Run panel with an autoencoder: the card's modes give a reconstruction (a volume on the input's grid) and
an interpolation between two volumes (a browsable sequence node), through the real worker process and a tiny
real model trained by Testing/engine/test_autoencoder's recipe (PySide6 offscreen, real scene)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import saveScreenshot

pytestmark = pytest.mark.gui
ENGINE_TESTS = Path(__file__).resolve().parents[1] / "engine"


@pytest.fixture(scope="module")
def autoencoderModel(tmp_path_factory):
    import sys

    import SimpleITK as sitk

    sys.path.insert(0, str(ENGINE_TESTS))
    import test_autoencoder as recipe

    from deepmed.applications.demos.autoencoder import sphere_image
    from deepmed.training.driver import train

    folder = tmp_path_factory.mktemp("spheres")
    rng = np.random.default_rng(0)
    ids = [f"s{i:02d}" for i in range(12)]
    for case_id in ids:
        sitk.WriteImage(sphere_image(rng), str(folder / f"{case_id}.nii.gz"))
    (folder / "spheres.csv").write_text("id,image\n" + "".join(f"{i},{i}.nii.gz\n" for i in ids))
    return train(folder / "spheres.csv", folder / "model", config=json.loads(json.dumps(recipe.CONFIG)),
                 progress="none")


@pytest.fixture
def panel(openPanel, autoencoderModel, qtHarness):
    from DeepMedLib import ModelLibrary

    library = qtHarness.library
    shutil.copytree(autoencoderModel, library / "spheres")
    opened = openPanel("DeepMedRun")
    ModelLibrary.changed.emit(str(library / "spheres"))
    opened.ui.modelComboBox.setCurrentIndex([m.id for m in opened.panel.models].index("spheres"))
    return opened


def _addVolume(scene, seed: int, name: str):
    from deepmed.applications.demos.autoencoder import sphere_image
    from DeepMedLib import SceneBridge

    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    SceneBridge.updateVolumeNodeFromImage(volume, sphere_image(np.random.default_rng(seed)))
    volume.CreateDefaultDisplayNodes()
    return volume


def test_reconstruction_and_interpolation_land_in_the_scene(panel, qtHarness, scene):
    from DeepMedLib.Geometry import ijkToRasFromNode

    ui = panel.ui
    ui.deviceComboBox.setCurrentText("cpu")
    first, second = _addVolume(scene, 1, "sphere A"), _addVolume(scene, 2, "sphere B")
    assert ui.modeComboBox.isVisibleTo(panel.parent) and ui.modeComboBox.count() == 4
    panel.panel.inputSelectors[0].setCurrentNode(first)
    qtHarness.processEventsUntil(lambda: panel.panel.dependencies.ready)  # the engine check runs in the background
    panel.panel.updateButtons()
    assert ui.applyButton.isEnabled(), ui.statusLabel.text()
    ui.applyButton.click()  # the default mode: reconstruct
    qtHarness.processEventsUntil(lambda: panel.panel.run is None)
    assert qtHarness.messages == [], qtHarness.messages
    reconstruction = panel.panel.lastOutput
    assert reconstruction is not None, ui.statusLabel.text()
    assert reconstruction.IsA("vtkMRMLScalarVolumeNode") and reconstruction is not first
    assert np.allclose(ijkToRasFromNode(reconstruction), ijkToRasFromNode(first), atol=1e-6)
    assert reconstruction.GetImageData().GetDimensions() == first.GetImageData().GetDimensions()

    ui.modeComboBox.setCurrentIndex([ui.modeComboBox.itemText(i) for i in range(4)].index("interpolate"))
    assert len(panel.panel.inputSelectors) == 2 and panel.panel.stepsBox is not None
    panel.panel.inputSelectors[0].setCurrentNode(first)
    panel.panel.inputSelectors[1].setCurrentNode(second)
    panel.panel.stepsBox.setValue(4)
    panel.panel.updateButtons()
    assert ui.applyButton.isEnabled()
    ui.applyButton.click()
    qtHarness.processEventsUntil(lambda: panel.panel.run is None)
    assert qtHarness.messages == [], qtHarness.messages
    sequence = panel.panel.lastOutput
    assert sequence.IsA("vtkMRMLSequenceNode") and sequence.GetNumberOfDataNodes() == 4
    browsers = [b for b in scene.GetNodesByClass("vtkMRMLSequenceBrowserNode")
                if b.GetMasterSequenceNode() is sequence]
    assert len(browsers) == 1
    saveScreenshot(panel.parent, "autoencoder_panel")
