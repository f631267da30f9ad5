"""The Run panel with a conditional generator (a tiny ``cgan`` model): no input volume, a box per condition from
the card, Generate, and a scalar volume on the card's own grid in the scene (PySide6 offscreen, real scene, real
worker process)."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import saveScreenshot

pytestmark = pytest.mark.gui
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ganModel(tmp_path_factory):
    from deepmed.applications.demos.conditional_gan import write_spheres
    from deepmed.training.driver import train

    folder = tmp_path_factory.mktemp("spheres")
    manifest = write_spheres(folder / "data", n_cases=8)
    return train(manifest, folder / "model", overrides=[
        "app=cgan", "task.conditions=[radius, shift]", "task.units=[mm, mm]", "task.image_size=16",
        "task.generator_channels=8", "task.discriminator_channels=8", "training.batch_size=4",
        "training.iterations_per_epoch=2", "training.device=cpu", "training.val_fraction=0"], epochs=1,
        progress="none")


@pytest.fixture
def panel(openPanel, ganModel, qtHarness):

    from DeepMedLib import ModelLibrary

    library = qtHarness.library
    shutil.copytree(ganModel, library / "spheres-cgan")
    opened = openPanel("DeepMedRun")
    ModelLibrary.changed.emit(str(library / "spheres-cgan"))
    opened.ui.modelComboBox.setCurrentIndex([m.id for m in opened.panel.models].index("spheres-cgan"))
    return opened


def test_a_generator_takes_its_conditions_and_writes_a_volume_on_its_grid(panel, ganModel, qtHarness, scene):
    import json

    import slicer

    ui, card = panel.ui, json.loads((ganModel / "model_card.json").read_text())
    assert panel.panel.inputSelectors == [] and len(panel.panel.conditionBoxes) == 2
    radius, shift = panel.panel.conditionBoxes
    assert (radius.minimum(), radius.maximum()) == pytest.approx((card["conditions"][0]["min"],
                                                                  card["conditions"][0]["max"]), abs=0.01)
    assert ui.applyButton.text() == "Generate" and ui.applyButton.isEnabled()  # no input volume needed
    radius.setValue(12.0)
    shift.setValue(-4.0)
    ui.applyButton.click()
    qtHarness.processEventsUntil(lambda: panel.panel.run is None, timeout=120)
    assert qtHarness.messages == [], qtHarness.messages
    volume = panel.panel.lastOutput
    assert volume.IsA("vtkMRMLScalarVolumeNode") and scene.GetNodeByID(volume.GetID()) is volume
    grid = card["output_grid"]
    array = slicer.util.arrayFromVolume(volume)
    assert list(array.shape[::-1]) == grid["size"] and np.isfinite(array).all() and array.std() > 0
    assert np.allclose(volume.GetSpacing(), grid["spacing"], atol=1e-5)
    lps_origin = np.asarray(grid["origin"])
    assert np.allclose(volume.GetOrigin(), lps_origin * [-1, -1, 1], atol=1e-4)  # RAS in the scene
    assert ui.statusLabel.text().startswith("Done: ")
    saveScreenshot(panel.parent, "cgan_panel")  # copied to Resources/Screenshots/cgan_panel.png
