"""The Model Zoo's two UNesT bundles (``renalStructures_UNEST_segmentation``, ``wholeBrainSeg_Large_UNEST_segmentation``),
whose network is their own ``scripts/`` code, imported with ``--trust-code`` and run by ``deepmed infer``: the
same labels as the bundle's own ``SupervisedEvaluator`` on 100% of the voxels, on the input's exact grid.

Configs and scripts as published (``Testing/data/monai_configs/<bundle>``, see each ORIGIN.md); random weights
of the network's shape, built by MONAI's ``ConfigParser`` from the bundle's ``network_def`` (the output layer's
weights scaled so that several labels win). UNesT's window is fixed at 96^3 by the network, so the small input
is one sliding window. The reference's changes to the bundle: ``num_workers`` 0 and ``dataset_dir`` pointed
at the case (the renal bundle's own ``$@bundle_root + './dataset/spleen'`` lacks a slash).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from trusted_bundle_data import forget_scripts as _forget_scripts

from deepmed.cli.main import main as deepmed

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "monai_configs"
BUNDLES = {"renalStructures_UNEST_segmentation": 2.0, "wholeBrainSeg_Large_UNEST_segmentation": 4.0}


def _parser(bundle: Path, **values):
    """MONAI's ConfigParser on the bundle's inference config, its ``scripts`` importable (undone by ``_done``)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    for key, value in values.items():
        parser[key] = value
    _forget_scripts()
    sys.path.insert(0, str(bundle))
    return parser


def _done(bundle: Path):
    sys.path.remove(str(bundle))
    _forget_scripts()


def unest_bundle(folder: Path, name: str, scale: float) -> Path:
    """The published bundle with random weights where its CheckpointLoader looks."""
    bundle = folder / name
    shutil.copytree(CONFIGS / name, bundle, ignore=shutil.ignore_patterns("__pycache__"))
    parser = _parser(bundle)
    try:
        torch.manual_seed(0)
        network = parser.get_parsed_content("network_def")
    finally:
        _done(bundle)
    with torch.no_grad():
        network.out.conv.conv.weight.mul_(scale)
    (bundle / "models").mkdir()
    torch.save(network.state_dict(), bundle / "models" / "model.pt")
    return bundle


def one_case(folder: Path) -> Path:
    """A small CT-like volume on a non-RAS grid with anisotropic spacing."""
    rng = np.random.default_rng(0)
    array = rng.normal(0, 100, (20, 26, 24)).astype(np.float32)
    array[4:14, 5:20, 3:12] += 300
    array[2:10, 12:24, 14:22] -= 150
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.7, 1.5, 2.0))
    image.SetOrigin((10.0, -20.0, 5.0))
    image.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))  # not RAS
    folder.mkdir(parents=True)
    path = folder / "case0.nii.gz"
    sitk.WriteImage(image, str(path))
    return path


def monai_evaluator_labels(bundle: Path, data: Path) -> sitk.Image:
    """The bundle run by MONAI as ``python -m monai.bundle run`` would (its evaluator and SaveImaged)."""
    pytest.importorskip("ignite", reason="the reference runs the bundle's own SupervisedEvaluator (pytorch-ignite)")
    parser = _parser(bundle, device=torch.device("cpu"), dataset_dir=str(data), **{"dataloader#num_workers": 0})
    try:
        parser.get_parsed_content("evaluator").run()
    finally:
        _done(bundle)
    (written,) = (bundle / "eval").rglob("*.nii.gz")
    return sitk.ReadImage(str(written))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_trusted_unest_bundle_gives_monai_s_own_labels_on_the_input_grid(name, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPMED_LIBRARY", str(tmp_path / "library"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        bundle = unest_bundle(tmp_path, name, BUNDLES[name])
        case = one_case(tmp_path / "data")
        assert deepmed(["zoo", "import", str(bundle), "--trust-code", "--id", "unest"]) == 0
        model = tmp_path / "library" / "unest"
        card = json.loads((model / "model_card.json").read_text())
        assert card["trust_code"] is True and card["application"] == "monai_bundle_trusted"
        assert not list(model.rglob("*.pt"))  # weights stored safely, not as a pickle
        output = tmp_path / "ours.nii.gz"
        assert deepmed(["infer", "--model", "unest", str(case), "-o", str(output), "--device", "cpu",
                        "--progress", "none"]) == 0
        theirs = monai_evaluator_labels(bundle, case.parent)
    finally:
        torch.set_num_threads(threads)
    ours, expected = sitk.ReadImage(str(output)), sitk.GetArrayFromImage(theirs)
    labels, counts = np.unique(expected, return_counts=True)
    assert (counts > 100).sum() >= 3, (labels, counts)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ours), expected)  # 100% of the voxels
    reference = sitk.ReadImage(str(case))
    assert ours.GetSize() == reference.GetSize() and ours.GetSpacing() == reference.GetSpacing()
    assert ours.GetOrigin() == reference.GetOrigin() and ours.GetDirection() == reference.GetDirection()
