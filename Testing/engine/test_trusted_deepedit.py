"""A DeepEdit bundle (the Model Zoo's real ``spleen_deepedit_annotation``: configs and ``scripts/`` in
``Testing/data/monai_configs``, see its ORIGIN.md) imported with ``--trust-code`` takes clicks: ``deepmed infer
--clicks`` gives the bundle's own output voxel for voxel, with the same clicks handed to the bundle's own data
dictionary (voxel indices per label name) and run by its ``SupervisedEvaluator`` (pytorch-ignite).

Random weights of the bundle's DynUNet (the output bias set so that both labels appear); a non-RAS input (the
bundle reorients the image and the clicks and inverts the result). The reference reads with ``NibabelReader``
(the bundle's ``ITKReader`` needs ``itk``, not a deepmed dependency), as the import does with the same ``--set``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from trusted_bundle_data import forget_scripts as _forget_scripts
from trusted_bundle_data import run_bundle_evaluator

from deepmed.cli.main import main as deepmed
from deepmed.errors import DeepMedError
from deepmed.interactive.clicks import Click, ClickSet

pytestmark = pytest.mark.slow  # the bundle's network on 128^3 voxels, twice per check

DEEPEDIT = Path(__file__).resolve().parents[1] / "data" / "monai_configs" / "spleen_deepedit_annotation"
READER = "preprocessing_transforms#0#reader"
POSITIVE, NEGATIVE = (12, 21, 9), (5, 30, 14)  # voxel indices (i, j, k) of the input file


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from monai.bundle import ConfigParser

    folder = tmp_path_factory.mktemp("deepedit") / "spleen_deepedit_annotation"
    shutil.copytree(DEEPEDIT, folder)
    parser = ConfigParser()
    parser.read_config(str(folder / "configs" / "inference.json"))
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    with torch.no_grad():  # both labels win somewhere
        last = [m for m in network.modules() if isinstance(m, torch.nn.Conv3d)][-1]
        last.weight.mul_(4)
        last.bias.copy_(torch.tensor([0.0, -0.05]))
    (folder / "models").mkdir()
    torch.save(network.state_dict(), folder / "models" / "model.pt")
    return folder


@pytest.fixture(scope="module")
def image_path(tmp_path_factory) -> Path:
    rng = np.random.default_rng(3)
    array = rng.normal(0, 40, (20, 36, 24)).astype(np.float32)  # z, y, x
    array[5:14, 14:28, 6:18] += 180
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.6, 1.2, 2.5))
    image.SetOrigin((12.0, -30.0, 4.0))
    image.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))  # not RAS: the bundle reorients image and clicks
    path = tmp_path_factory.mktemp("case") / "case.nii.gz"
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture(scope="module")
def model(bundle, tmp_path_factory) -> Path:
    library = tmp_path_factory.mktemp("library")
    _forget_scripts()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEEPMED_LIBRARY", str(library))
        assert deepmed(["zoo", "import", str(bundle), "--trust-code", "--set", f"{READER}=NibabelReader"]) == 0
    (model,) = [p for p in library.iterdir() if p.is_dir()]
    return model


def bundle_output(bundle: Path, entry: dict, out: Path) -> np.ndarray:
    """The bundle run by MONAI as ``python -m monai.bundle run`` would, on one data dictionary."""
    values = {"dataset#data": [entry], READER: "NibabelReader"}
    return sitk.GetArrayFromImage(run_bundle_evaluator(bundle, values, initialize=True, output_dir=out))


def ras_click(image: sitk.Image, index, positive: bool) -> Click:
    x, y, z = image.TransformIndexToPhysicalPoint([int(v) for v in index])
    return Click((-x, -y, z), positive, "spleen")


def test_the_import_declares_the_bundle_s_click_mode(model):
    card = json.loads((model / "model_card.json").read_text())
    assert [m["name"] for m in card["modes"]] == ["refine", "predict"]
    assert card["modes"][0]["inputs"] == "clicks"
    assert card["task"]["clicks"] == {"format": "deepedit", "labels": {"background": 0, "spleen": 1},
                                      "negative_key": "background"}
    assert [(label["value"], label["name"]) for label in card["labels"]] == [(0, "background"), (1, "spleen")]


def test_clicks_give_the_bundle_s_own_output(bundle, model, image_path, tmp_path):
    image = sitk.ReadImage(str(image_path))
    clicks = ClickSet((ras_click(image, POSITIVE, True), ras_click(image, NEGATIVE, False)), "RAS")
    clicks_file = tmp_path / "clicks.json"
    clicks_file.write_text(json.dumps(clicks.to_dict()))
    ours = tmp_path / "ours.nii.gz"
    _forget_scripts()
    assert deepmed(["infer", "--model", str(model), str(image_path), "--clicks", str(clicks_file), "-o",
                    str(ours)]) == 0
    result = sitk.ReadImage(str(ours))
    assert result.GetSize() == image.GetSize() and result.GetDirection() == image.GetDirection()
    got = sitk.GetArrayFromImage(result)
    reference = bundle_output(bundle, {"image": str(image_path), "spleen": [list(POSITIVE)],
                                       "background": [list(NEGATIVE)]}, tmp_path / "reference")
    assert got.shape == reference.shape
    assert np.array_equal(got, reference.astype(got.dtype))
    assert 0 < (got == 1).mean() < 1

    automatic = bundle_output(bundle, {"image": str(image_path)}, tmp_path / "automatic")
    assert (automatic != reference).mean() > 0.001  # the clicks change the bundle's result: a real comparison

    plain = tmp_path / "plain.nii.gz"
    _forget_scripts()
    assert deepmed(["infer", "--model", str(model), str(image_path), "-o", str(plain)]) == 0
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(plain))), automatic.astype(got.dtype))


def test_a_warm_session_refines_with_the_bundle(model, image_path):
    from deepmed.interactive.session import InteractiveSession

    image = sitk.ReadImage(str(image_path))
    _forget_scripts()
    session = InteractiveSession(model)
    assert session.labels == ("spleen",) and not session.prepares
    one = session.refine(str(image_path), ClickSet((ras_click(image, POSITIVE, True),), "RAS"))
    previous = sitk.GetArrayFromImage(one.labels)
    previous[0, 0, 0] = 7  # a label the bundle does not make: kept by the merge
    as_image = sitk.GetImageFromArray(previous)
    as_image.CopyInformation(image)
    two = session.refine(str(image_path), ClickSet((ras_click(image, POSITIVE, True),
                                                    ras_click(image, NEGATIVE, False)), "RAS"), previous=as_image)
    assert one.labels.GetSize() == image.GetSize() and one.labels.GetOrigin() == image.GetOrigin()
    assert sitk.GetArrayFromImage(two.labels)[0, 0, 0] == 7


def test_a_click_outside_the_image_is_one_line(model, image_path, tmp_path, capsys):
    clicks_file = tmp_path / "clicks.json"
    clicks_file.write_text(json.dumps({"coordinates": "LPS", "clicks": [{"point": [900, 0, 0], "label": "spleen"}]}))
    _forget_scripts()
    assert deepmed(["infer", "--model", str(model), str(image_path), "--clicks", str(clicks_file), "-o",
                    str(tmp_path / "x.nii.gz")]) != 0
    err = capsys.readouterr().err
    assert "clicks[0]" in err and "outside the image" in err and "Traceback" not in err
    assert not (tmp_path / "x.nii.gz").exists()


def test_negative_clicks_need_a_background_label():
    from deepmed.applications.bundle_clicks import BundleClicks, click_entries

    image = sitk.Image(10, 10, 10, sitk.sitkUInt8)
    prompt = BundleClicks({"liver": 1, "spleen": 2}, None)
    entries = click_entries(ClickSet((Click((2.0, 3.0, 4.0), True, "liver"),)), image, "liver", prompt)
    assert entries == {"liver": [[2, 3, 4]], "spleen": []}
    with pytest.raises(DeepMedError, match="negative"):
        click_entries(ClickSet((Click((2.0, 3.0, 4.0), False, "liver"),)), image, "liver", prompt)
