"""Module logics on real MRML with real background processes: train, segment, predict, cancel, data export."""

import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from conftest import MODULES, OBLIQUE
from DeepMedRunLib.RunLogic import RunError, RunLogic
from DeepMedTrainLib.TrainLogic import TrainError, TrainLogic
from naming import naming

from deepmed.errors import DeepMedError
from deepmed.io import grid_differences
from DeepMedLib import ModelLibrary, SceneBridge
from DeepMedLib.Geometry import ijkToRasFromNode
from DeepMedLib.SelfTestData import (
    TINY_SETTINGS,
    syntheticArrays,
    syntheticCase,
    syntheticImage,
    writeSyntheticDataset,
)
from slicer_support.mrml_app import HeadlessSlicer

pytestmark = pytest.mark.slow
EPOCHS = 6


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A model library holding one tiny segmentation model trained through TrainLogic's worker process."""
    root = tmp_path_factory.mktemp("logic")
    (root / "library").mkdir()
    ModelLibrary.useLibraryFolder(root / "library", announce=False)  # the panels' folder, given to the workers
    app = HeadlessSlicer()
    changed, events = [], []
    ModelLibrary.changed.connect(changed.append)
    manifest = writeSyntheticDataset(root / "data")
    run = TrainLogic().train(manifest, name="boxes", epochs=EPOCHS, device="cpu", settings=TINY_SETTINGS,
                             scene=app.scene, progressCallback=events.append, wait=True, timeout=600)
    ModelLibrary.changed.disconnect(changed.append)
    info = types.SimpleNamespace(root=root, manifest=manifest, run=run, events=events, changed=changed,
                                 loss=run.curves.values(run.curves.lossTable),
                                 validation=run.curves.values(run.curves.validationTable),
                                 chartSeries=run.curves.chart.GetNumberOfPlotSeriesNodes())
    app.close()
    yield info
    ModelLibrary.useLibraryFolder(None)


def nodeCount(scene) -> int:
    return scene.GetNumberOfNodes()


def test_training_fills_live_curves_and_lands_in_the_library(library):
    assert library.run.job.result.succeeded, library.run.job.result.errorMessage
    assert library.run.modelDir == library.root / "library" / "boxes"
    assert [row[0] for row in library.loss] == list(range(1, EPOCHS + 1))
    assert all(np.isfinite(row[1]) for row in library.loss)
    assert len(library.validation) == EPOCHS and library.chartSeries >= 2  # loss + validation metrics
    assert library.changed == [str(library.run.modelDir)]
    assert [m.id for m in ModelLibrary.models()] == ["boxes"]
    kinds = [e["event"] for e in library.events]
    assert kinds[0] == "started" and kinds[-1] == "finished" and "iteration" in kinds
    assert library.run.fraction == 1.0 and "finished" in library.run.summary()


def test_segmentation_equals_the_engine_output_on_the_exact_input_grid(library, scene, tmp_path):
    volume, truth = syntheticCase(scene, seed=9, direction=OBLIQUE)
    segmentation = RunLogic().run(model="boxes", inputVolumes=[volume], device="cpu", wait=True, timeout=300)
    assert SceneBridge.segmentNames(segmentation) == ["box", "core"]
    assert segmentation.GetNodeReference(segmentation.GetReferenceImageGeometryReferenceRole()) is volume
    labelImage, _ = SceneBridge.labelImageFromSegmentation(segmentation, volume, {"box": 1, "core": 2})
    # the same voxels through the command line on a file
    sitk.WriteImage(SceneBridge.imageFromVolumeNode(volume), str(tmp_path / "in.nrrd"))
    subprocess.run([sys.executable, "-m", "deepmed", "infer", "--model", str(library.run.modelDir),
                    str(tmp_path / "in.nrrd"), "-o", str(tmp_path / "out.nrrd"), "--device", "cpu",
                    "--progress", "none"], check=True, timeout=300)
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out.nrrd")))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(labelImage), expected)
    predicted = expected > 0
    assert 2 * (predicted & (truth > 0)).sum() / (predicted.sum() + (truth > 0).sum()) > 0.5


def test_cancel_leaves_the_scene_as_it_was(library, scene):
    volume, _ = syntheticCase(scene)
    before = nodeCount(scene)
    run = RunLogic().run(model="boxes", inputVolumes=[volume], device="cpu")
    run.cancel()
    assert run.wait(timeout=60) is None
    assert run.result.status == "cancelled"
    assert nodeCount(scene) == before
    assert not run.workDir.exists()


def test_wrong_inputs_and_broken_models_are_clear_errors(library, scene, tmp_path):
    volume, _ = syntheticCase(scene)
    before = nodeCount(scene)
    with pytest.raises(RunError, match=naming("boxes", "(MR)", "got 2")):  # the engine's own check (one rule)
        RunLogic().run(model="boxes", inputVolumes=[volume, volume])
    table = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "not a segmentation")
    with pytest.raises(RunError, match=naming("Segmentation", "ScalarVolume")):
        RunLogic().run(model="boxes", inputVolumes=[volume], outputNode=table)
    scene.RemoveNode(table)
    broken = tmp_path / "broken"
    shutil.copytree(library.run.modelDir, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(RunError, match="model.safetensors"):
        RunLogic().run(model=str(broken), inputVolumes=[volume], device="cpu", wait=True, timeout=300)
    assert nodeCount(scene) == before


def test_a_training_starts_only_from_a_model_made_for_its_application(library):
    with pytest.raises(TrainError, match=naming("boxes", "segmentation", "regression")):
        TrainLogic().train(library.manifest, application="regression", initModel="boxes")
    with pytest.raises(DeepMedError, match=naming("no-such-model")):
        TrainLogic().train(library.manifest, initModel="no-such-model")
    assert TrainLogic.activeRun is None or not TrainLogic.activeRun.job.running


def test_one_training_at_a_time_inference_meanwhile_stop_and_resume(library, scene, tmp_path):
    out = tmp_path / "long"
    logic = TrainLogic()
    run = logic.train(library.manifest, outputDir=out, epochs=40, device="cpu", settings=TINY_SETTINGS)
    try:
        with pytest.raises(TrainError, match="a training is already running"):
            TrainLogic().train(library.manifest, name="second", device="cpu")
        volume, _ = syntheticCase(scene)
        node = RunLogic().run(model="boxes", inputVolumes=[volume], device="cpu", wait=True, timeout=300)
        assert node is not None and run.job.running  # inference ran while the training went on
        while run.poll() and not any(e["event"] == "epoch" for e in run.job.events):
            pass
        run.stop()
        result = run.wait(timeout=300)
    finally:
        run.cancel()
    assert result.status == "stopped", result.errorMessage
    assert (out / "checkpoints" / "last").is_dir() and "Resume" in run.summary()
    resumed = logic.train(library.manifest, outputDir=out, epochs=40, device="cpu", resume=True, wait=True,
                          timeout=600)
    assert resumed.job.result.succeeded, resumed.job.result.errorMessage
    assert resumed.job.events[0]["start_epoch"] >= 1


def test_regression_model_predicts_a_scalar_volume(scene, tmp_path):
    import deepmed

    folder = tmp_path / "reg"
    folder.mkdir()
    entries = []
    for index in range(3):
        volume, _ = syntheticCase(scene, seed=index)
        image = SceneBridge.imageFromVolumeNode(volume)
        target = sitk.GetImageFromArray(2.0 * sitk.GetArrayFromImage(image) + 5.0)
        target.CopyInformation(image)
        sitk.WriteImage(image, str(folder / f"c{index}.nii.gz"))
        sitk.WriteImage(target, str(folder / f"c{index}_t.nii.gz"))
        entries.append({"id": f"c{index}", "image": f"c{index}.nii.gz", "label": f"c{index}_t.nii.gz"})
    import json

    (folder / "dataset.json").write_text(json.dumps({"name": "reg", "channel_names": {"0": "MR"}, "labels": {},
                                                     "training": entries}))
    model = deepmed.train(folder / "dataset.json", tmp_path / "regmodel", app="regression", epochs=2, device="cpu",
                          overrides=[f"{k}={v}".replace(" ", "") for k, v in TINY_SETTINGS.items()], progress="none")
    volume, _ = syntheticCase(scene, seed=5, direction=OBLIQUE)
    output = RunLogic().run(model=str(model), inputVolumes=[volume], device="cpu", wait=True, timeout=300)
    assert output.IsA("vtkMRMLScalarVolumeNode") and not output.IsA("vtkMRMLLabelMapVolumeNode")
    np.testing.assert_array_equal(ijkToRasFromNode(output), ijkToRasFromNode(volume))
    assert output.GetDisplayNode() is not None and not output.GetDisplayNode().GetAutoWindowLevel()


def test_module_self_test_runs(library, slicerApp, monkeypatch):
    """The ScriptedLoadableModuleTest shipped in DeepMedRun.py, run here on slicer-core."""
    from slicer_support import scripted_module

    scripted_module.install()
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(processEvents=lambda: None), raising=False)
    import DeepMedRun

    test = DeepMedRun.DeepMedRunTest()
    test.setUp()
    test.test_segment_synthetic_volume()
    # what the self-test leaves in the scene: the synthetic volume and its segmentation, on the volume's grid
    scene = slicer.mrmlScene
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1
    volume = scene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
    segmentation = scene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
    assert SceneBridge.segmentNames(segmentation) == ["box", "core"]
    assert segmentation.GetNodeReference(segmentation.GetReferenceImageGeometryReferenceRole()) is volume
    labelImage, _ = SceneBridge.labelImageFromSegmentation(segmentation, volume, {"box": 1, "core": 2})
    image, truth = syntheticArrays(7)  # the case the self-test segments
    assert grid_differences(SceneBridge.imageFromVolumeNode(volume), syntheticImage(image)) == []
    assert grid_differences(labelImage, syntheticImage(image)) == []
    predicted = sitk.GetArrayFromImage(labelImage)
    assert predicted.shape == truth.shape
    assert 2 * ((predicted > 0) & (truth > 0)).sum() / ((predicted > 0).sum() + (truth > 0).sum()) > 0.5
    assert set(np.unique(predicted)) <= {0, 1, 2}


@pytest.mark.parametrize("moduleName, testName", [("DeepMedData", "test_export_scene_cases"),
                                                  ("DeepMedTrain", "test_train_tiny_model"),
                                                  ("DeepMedTrain", "test_curves_and_config_without_torch"),
                                                  ("DeepMedRun", "test_result_lands_on_the_input_grid_without_torch"),
                                                  ("DeepMedReview", "test_ranked_case_loads_on_its_grid")])
def test_other_module_self_tests_run(moduleName, testName, slicerApp, monkeypatch, tmp_path):
    import importlib

    from slicer_support import scripted_module

    scripted_module.install()
    monkeypatch.setenv("DEEPMED_LIBRARY", str(tmp_path / "library"))
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(processEvents=lambda: None), raising=False)
    module = importlib.import_module(moduleName)
    test = getattr(module, f"{moduleName}Test")()
    test.setUp()
    getattr(test, testName)()


@pytest.mark.parametrize("moduleName", ["DeepMedData", "DeepMedTrain", "DeepMedRun"])
def test_self_tests_skip_the_torch_parts_without_the_engine(moduleName, slicerApp, monkeypatch, tmp_path):
    """On the Extensions build machines (no torch) the self-tests pass, saying what they skipped."""
    import importlib
    import logging

    from DeepMedLib import Dependencies
    from slicer_support import scripted_module

    scripted_module.install()
    monkeypatch.setenv("DEEPMED_LIBRARY", str(tmp_path / "library"))
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(processEvents=lambda: None), raising=False)
    monkeypatch.setattr(Dependencies, "isAvailable", lambda name: name not in ("torch", "monai"))
    shown = []
    monkeypatch.setattr(logging, "info", lambda message, *args: shown.append(message))
    module = importlib.import_module(moduleName)
    getattr(module, f"{moduleName}Test")().runTest()
    assert any(message.startswith("Skipped the") and "Missing Python packages: PyTorch, monai" in message
               for message in shown), shown


@pytest.mark.parametrize("moduleName, skipped", [("DeepMedTrain", {"test_train_tiny_model"}),
                                                  ("DeepMedRun", {"test_segment_synthetic_volume"}),
                                                  ("DeepMedData", set()), ("DeepMedReview", set())])
def test_ctest_self_tests_skip_per_method_without_the_engine(moduleName, skipped, slicerApp, monkeypatch, tmp_path):
    """As ctest runs them on the Extensions build machines (no torch): each test_* method on its own."""
    from DeepMedLib import Dependencies
    from slicer_support import scripted_module
    from slicer_support.testing import runUnitTest

    scripted_module.install()
    monkeypatch.setenv("DEEPMED_LIBRARY", str(tmp_path / "library"))
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(processEvents=lambda: None), raising=False)
    monkeypatch.setattr(Dependencies, "isAvailable", lambda name: name not in ("torch", "monai"))
    result = runUnitTest([str(MODULES / moduleName)], moduleName)
    assert result.wasSuccessful() and result.testsRun >= 1
    assert {test._testMethodName for test, reason in result.skipped} == skipped


def test_run_module_adopts_a_parameter_node_saved_under_its_former_name(slicerApp):
    """Scenes saved when the module was called DeepMedSegment keep their Run settings."""
    from slicer_support import scripted_module

    scripted_module.install()
    import DeepMedRun

    old = slicerApp.scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
    old.UnRegister(None)
    old.SetSingletonTag("DeepMedSegment")
    old.SetAttribute("ModuleName", "DeepMedSegment")
    old.SetParameter("model", "liver-ct")
    slicerApp.scene.AddNode(old)
    node = DeepMedRun.DeepMedRunLogic().getParameterNode()
    assert node is old and node.GetParameter("model") == "liver-ct"
    assert node.GetAttribute("ModuleName") == "DeepMedRun"
    assert DeepMedRun.DeepMedRunLogic().getParameterNode() is old


def test_the_gui_process_never_imports_torch():
    """Importing every module file and Lib module the panels use leaves torch and MONAI out of the process."""
    code = """
import sys, types
sys.path[:0] = {paths!r}
from slicer_support import scripted_module
scripted_module.install()
import DeepMedData, DeepMedTrain, DeepMedRun, DeepMedReview
from DeepMedLib import ModelLibrary, SceneBridge, Dependencies, TrainingCurves, SelfTestData
import DeepMedDataLib.DataLogic, DeepMedTrainLib.TrainLogic, DeepMedRunLib.RunLogic, DeepMedReviewLib.ReviewLogic
ModelLibrary.models()
heavy = sorted(name for name in sys.modules if name.split(".")[0] in ("torch", "monai"))
print(heavy)
"""
    repo = Path(__file__).resolve().parents[2]
    modules = repo / "SlicerDeepMed" / "Modules"
    paths = [str(repo / "Testing"), str(modules)] + [str(modules / name) for name in
                                                     ("DeepMedData", "DeepMedTrain", "DeepMedRun", "DeepMedReview")]
    output = subprocess.run([sys.executable, "-c", code.format(paths=paths)], capture_output=True, text=True,
                            check=True, timeout=120).stdout
    assert output.strip().splitlines()[-1] == "[]"


def test_the_run_request_is_the_engine_command_line_the_cli_parses(tmp_path):
    """One typed value -> ``deepmed infer`` arguments that the engine's own parser reads back field by field."""
    from DeepMedRunLib.InferenceRequest import InferenceRequest

    from deepmed.cli.main import build_parser

    request = InferenceRequest(model=tmp_path / "my model", inputs=(tmp_path / "a b.nrrd", tmp_path / "c.nrrd"),
                               output=tmp_path / "out.seg.nrrd", device="cpu", mode="interpolate",
                               condition=(0.5, 1e-3), steps=4, count=2, seed=7, tta=True, keepLargest=True,
                               folds=(0, 2))
    parsed = build_parser().parse_args(request.asArgs())
    assert parsed.command == "infer" and parsed.progress == "jsonl"
    assert parsed.condition == "0.5,0.001" and parsed.folds == "0,2"
    assert str(parsed.model) == str(tmp_path / "my model") and parsed.device == "cpu" and parsed.mode == "interpolate"
    assert [str(p) for p in parsed.inputs] == [str(tmp_path / "a b.nrrd"), str(tmp_path / "c.nrrd")]
    assert str(parsed.output) == str(tmp_path / "out.seg.nrrd") and parsed.steps == 4 and parsed.count == 2
    assert parsed.seed == 7 and parsed.tta and parsed.keep_largest
    plain = build_parser().parse_args(InferenceRequest(tmp_path, (tmp_path / "x.nrrd",), tmp_path / "o.nii.gz").asArgs())
    assert not plain.tta and plain.mode is None and plain.folds is None
