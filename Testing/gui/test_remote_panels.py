"""Train and Segment through an SSH worker: a real OpenSSH server on 127.0.0.1 (the sshServer fixture), the
panels' real widget code; a dropped connection mid-training, then Reattach (screenshots show the setting)."""

import os
import signal

import numpy as np
import pytest
from conftest import OBLIQUE, saveScreenshot
from sshd_fixture import ssh_children, ssh_server_fixture  # noqa: F401 - the sshServer fixture
from test_train_panel import configureTinyTraining

from DeepMedLib.SelfTestData import syntheticCase, writeSyntheticDataset

pytestmark = pytest.mark.gui


def read(widget, name: str):
    """A widget property, whether PySide hands it out as a property or as a getter here."""
    value = getattr(widget, name) if hasattr(widget, name) else getattr(widget, "is" + name[0].upper() + name[1:])
    return value() if callable(value) else value


def chooseRemote(section, server):
    section.chooseHost({"host": server.alias, "python": server.python, "workdir": str(server.workdir),
                        "ssh_config": str(server.ssh_config)})


@pytest.mark.slow
def test_train_remotely_survives_a_dropped_connection_and_reattaches(openPanel, qtHarness, sshServer, tmp_path):
    panel = openPanel("DeepMedTrain")
    ui, remote = panel.ui, panel.panel.remote
    assert remote.state()["runOn"] == "this computer" and not remote.state()["hostShown"]
    chooseRemote(remote, sshServer)
    assert remote.state()["runOn"] == "a remote machine" and remote.state()["hostShown"]
    remote.onCheck()  # Check connection
    qtHarness.processEventsUntil(lambda: remote.checkJob is None, timeout=60)
    assert remote.state()["status"].startswith(f"{sshServer.alias}: deepmed ")  # versions compared

    configureTinyTraining(ui, writeSyntheticDataset(tmp_path / "boxes"), epochs=4)
    ui.trainButton.click()
    run = panel.panel.run
    qtHarness.processEventsUntil(lambda: read(ui.progressBar, "value") > 0, timeout=120)
    for pid in ssh_children(run.job.process.pid):   # the network drops
        os.kill(pid, signal.SIGKILL)
    qtHarness.processEventsUntil(lambda: panel.panel.run is None, timeout=60)
    assert qtHarness.messages == []                  # no error box: the run goes on over there
    assert read(ui.statusLabel, "text").startswith("Connection lost; the remote run goes on")
    assert remote.state()["canReattach"] and not (run.modelDir / "model.safetensors").exists()
    saveScreenshot(panel.parent, "train_panel_remote_disconnected")

    remote.onReattach(remote.disconnectedJob)  # Reattach
    assert read(ui.stopButton, "enabled") and not remote.state()["canReattach"]
    qtHarness.processEventsUntil(lambda: panel.panel.run is None, timeout=180)
    status = read(ui.statusLabel, "text")
    assert status.startswith(f"Finished: model '{run.modelDir.name}' is in the library"), status
    assert read(ui.progressBar, "value") == 100 and (run.modelDir / "model.safetensors").is_file()
    curves = panel.panel.curves
    assert [row[0] for row in curves.values(curves.lossTable)] == [1, 2, 3, 4]  # replayed whole
    saveScreenshot(panel.parent, "train_panel_remote_finished")


def test_segment_remotely_gives_the_same_segmentation_as_here(openPanel, qtHarness, scene, sshServer):
    import SimpleITK as sitk

    from DeepMedLib import SceneBridge

    panel = openPanel("DeepMedRun")
    ui = panel.ui
    volume, _ = syntheticCase(scene, seed=11, direction=OBLIQUE, name="patient MR")
    ui.deviceComboBox.setCurrentText("cpu")
    ui.applyButton.click()
    qtHarness.processEventsUntil(lambda: panel.panel.run is None, timeout=120)
    here = panel.panel.lastOutput
    chooseRemote(panel.panel.remote, sshServer)
    ui.applyButton.click()
    qtHarness.processEventsUntil(lambda: panel.panel.run is None, timeout=180)
    assert qtHarness.messages == [], qtHarness.messages
    there = panel.panel.lastOutput
    assert panel.panel.remote.reattachButton.isHidden()  # an inference is not reattached
    assert there is not here and read(ui.statusLabel, "text") == f"Done: {there.GetName()}"
    arrays = [sitk.GetArrayFromImage(SceneBridge.labelImageFromSegmentation(node, volume)[0]) for node in (here, there)]
    assert arrays[0].any() and np.array_equal(arrays[0], arrays[1])
    saveScreenshot(panel.parent, "run_panel_remote_done")
