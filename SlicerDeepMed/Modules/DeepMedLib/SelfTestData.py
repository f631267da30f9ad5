"""Synthetic data and a tiny model for the modules' self-tests (in Slicer) and the headless tests.

Bright boxes in noise: label 1 "box" with a darker label 2 "core" inside. Made with numpy/SimpleITK only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from DeepMedLib import SceneBridge

SHAPE_ZYX = (18, 22, 26)
SPACING = (1.1, 0.9, 1.6)
TINY_SETTINGS = {"data.patch_size": [16, 16, 16], "network.args.channels": [8, 16, 32],
                 "network.args.strides": [2, 2], "training.iterations_per_epoch": 4, "training.val_every": 1}


def syntheticArrays(seed: int):
    rng = np.random.default_rng(seed)
    label = np.zeros(SHAPE_ZYX, np.uint8)
    shift = seed % 4
    label[4:13, 5 + shift:15 + shift, 6:18] = 1
    label[8:11, 8 + shift:11 + shift, 9:12] = 2
    image = rng.normal(0, 0.4, SHAPE_ZYX).astype(np.float32) + 1.5 * (label > 0) - 0.8 * (label == 2)
    return image, label


def syntheticImage(array, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), origin=(-10.0, 20.0, 5.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def writeSyntheticDataset(folder, cases: int = 4) -> Path:
    """Files and a ``dataset.json`` manifest; returns the manifest path."""
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for index in range(cases):
        image, label = syntheticArrays(index)
        sitk.WriteImage(syntheticImage(image), str(folder / f"case{index}.nii.gz"))
        sitk.WriteImage(syntheticImage(label), str(folder / f"case{index}_seg.nii.gz"))
        entries.append({"id": f"case{index}", "image": f"case{index}.nii.gz", "label": f"case{index}_seg.nii.gz"})
    manifest = {"name": "boxes", "channel_names": {"0": "MR"}, "labels": {"background": 0, "box": 1, "core": 2},
                "training": entries}
    (folder / "dataset.json").write_text(json.dumps(manifest, indent=2))
    return folder / "dataset.json"


def syntheticCase(scene, seed: int = 7, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), name: str = "boxes"):
    """A volume node in ``scene`` and its true label array (K, J, I)."""
    image, label = syntheticArrays(seed)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(name))
    SceneBridge.updateVolumeNodeFromImage(node, syntheticImage(image, direction=direction))
    node.CreateDefaultDisplayNodes()
    return node, label


def trainTinyModel(folder, epochs: int = 8, processEvents=None, scene=None) -> Path:
    """Train a tiny segmentation model through the background process; returns its model directory."""
    from DeepMedTrainLib.TrainLogic import TrainLogic

    folder = Path(folder)
    manifest = writeSyntheticDataset(folder / "data")
    run = TrainLogic().train(manifest, outputDir=folder / "model", epochs=epochs, device="cpu",
                             settings=TINY_SETTINGS, scene=scene, wait=True, timeout=600, processEvents=processEvents)
    if not run.job.result.succeeded:
        raise RuntimeError(f"tiny training failed: {run.job.result.errorMessage}")
    return run.modelDir


def skipWithoutEngine(testCase, what: str) -> None:
    """Skip ``testCase``'s current test method when the engine's packages (torch, MONAI) are missing.

    ``slicer.testing.runUnitTest`` (what ``slicer_add_python_unittest`` registers with ctest, e.g. on the
    Extensions build machines, where there is no torch) loads each ``test_*`` method on its own, so each
    method that needs the engine says so itself."""
    from DeepMedLib import Dependencies

    missing = Dependencies.describeMissing()
    if missing:
        testCase.delayDisplay(f"Skipped the {what} (needs the engine's packages): {missing}")
        testCase.skipTest(missing)


def runEach(testCase, *methods) -> None:
    """``runTest`` (Slicer's Self Tests): every method from a clean scene; a skipped one does not fail."""
    import unittest

    for method in methods:
        testCase.setUp()
        try:
            method()
        except unittest.SkipTest:
            pass
