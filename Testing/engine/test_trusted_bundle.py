"""MONAI bundles whose pipeline needs their own code: refused by default (naming --trust-code), listed without
running anything (``deepmed zoo inspect``), and with ``--trust-code`` run through MONAI's own config machinery,
giving the bundle's own results voxel for voxel.

The bundle is the Model Zoo's real ``renalStructures_CECT_segmentation`` (configs and ``scripts/`` copied in
``Testing/data/monai_configs``, see its ORIGIN.md): three CT phases read by three ``LoadImaged`` entries and
joined by the bundle's ``scripts.my_transforms.ConcatImages``, labels merged by its ``MergeClassesd``. Random
weights of the network's shape (the last layer's bias set so that several labels appear). The reference is
the bundle's own ``SupervisedEvaluator`` run by MONAI (``ConfigParser`` -> ``evaluator.run()``, pytorch-ignite),
its ``SaveImaged`` output read back; the one change to it: ``num_workers`` 0 (no worker processes in tests).
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from naming import names
from trusted_bundle_data import PHASES, RENAL, renal_bundle, run_bundle_evaluator
from trusted_bundle_data import forget_scripts as _forget_scripts

from deepmed.cli.main import main as deepmed
from deepmed.errors import DeepMedError
from deepmed.zoo.trusted_bundle import code_to_run
from deepmed.zoo.trusted_card import convert_with_trust


def test_inspect_lists_the_bundle_s_code_without_running_it(tmp_path, capsys):
    _forget_scripts()
    assert deepmed(["zoo", "inspect", str(RENAL), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["needs_code"] is True
    assert {t["target"] for t in report["targets"]} == {"scripts.my_transforms.ConcatImages",
                                                        "scripts.my_transforms.MergeClassesd"}
    assert [e["key"] for e in report["expressions"]] == ["postprocessing#transforms#0#transform"]
    assert "scripts/my_transforms.py" in report["scripts"] and "$import glob" in report["imports"]
    assert not any(name.startswith("scripts") for name in sys.modules)  # listed, never imported


def test_code_to_run_follows_references_from_the_pipeline_only():
    config = {"imports": ["$import os"], "device": "$torch.device('cuda')", "root": "$os.getcwd()",
              "size": "$int(@root)", "datalist": "$glob.glob('/data/*')", "network_def": {"_target_": "UNet"},
              "preprocessing": {"_target_": "Compose", "transforms": [
                  {"_target_": "scripts.x.Load", "size": "@size", "device": "@device"},
                  {"_target_": "SaveImaged", "output_dir": "$@root + '/out'"}]},
              "inferer": {"_target_": "SimpleInferer"}, "postprocessing": [{"_target_": "monai.transforms.Identityd"}],
              "evaluator": {"_target_": "SupervisedEvaluator", "run": "$@evaluator.run()"}}
    code = code_to_run(config)
    assert code.imports == ["$import os"]
    assert [e["key"] for e in code.expressions] == ["size", "root"]  # not datalist/evaluator; device is the engine's
    assert code.targets == [{"key": "preprocessing#transforms#0", "target": "scripts.x.Load"}]
    assert code.needed and not code_to_run({"network_def": {"_target_": "UNet"}}).needed


def test_a_bundle_that_imports_as_data_runs_no_code_even_when_trusted(tmp_path):
    card = convert_with_trust(RENAL, tmp_path / "m", "b", {}, True, lambda *args: {"application": "monai_bundle"})
    assert card == {"application": "monai_bundle"} and not (tmp_path / "m").exists()


def test_without_the_flag_the_refusal_names_the_key_and_the_flag(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEEPMED_LIBRARY", str(tmp_path / "library"))
    assert deepmed(["zoo", "import", str(RENAL)]) != 0
    error = capsys.readouterr().err
    assert "--trust-code" in error and "preprocessing#transforms#0" in error and "Traceback" not in error
    assert not (tmp_path / "library" / "renalStructures_CECT_segmentation").exists()
    with pytest.raises(DeepMedError, match="--set inferer#nothing"):
        convert_with_trust(RENAL, tmp_path / "m", "b", {"inferer#nothing": 1}, True,
                           lambda *args: (_ for _ in ()).throw(DeepMedError("refused")))


@pytest.mark.slow
def test_trusted_bundle_gives_monai_s_own_labels_on_the_input_grid(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEEPMED_LIBRARY", str(tmp_path / "library"))
    bundle = renal_bundle(tmp_path)
    case = bundle / "data" / "case0"
    assert deepmed(["zoo", "import", str(bundle), "--trust-code"]) == 0
    model = tmp_path / "library" / "renal"
    card = json.loads((model / "model_card.json").read_text())
    assert card["trust_code"] is True and card["application"] == "monai_bundle_trusted"
    assert card["task"]["input_keys"] == ["artery", "vein", "excret"]
    assert "scripts.my_transforms.ConcatImages" in card["description"]
    assert (model / "bundle" / "scripts" / "my_transforms.py").is_file() and not list(model.rglob("*.pt"))
    inputs = [str(case / f"{name}.nii.gz") for name in PHASES]
    output = tmp_path / "ours.nii.gz"
    assert deepmed(["infer", "--model", "renal", *inputs, "-o", str(output), "--device", "cpu",
                    "--progress", "none"]) == 0
    ours, theirs = sitk.ReadImage(str(output)), run_bundle_evaluator(bundle, written="case0/12/*.nii.gz")
    expected = sitk.GetArrayFromImage(theirs)
    labels, counts = np.unique(expected, return_counts=True)
    assert (counts > 100).sum() >= 3, (labels, counts)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ours), expected)  # 100% of the voxels
    reference = sitk.ReadImage(inputs[0])
    assert ours.GetSize() == reference.GetSize() and ours.GetSpacing() == reference.GetSpacing()
    assert ours.GetOrigin() == reference.GetOrigin() and ours.GetDirection() == reference.GetDirection()
    capsys.readouterr()
    assert deepmed(["zoo", "list", "--json"]) == 0
    rows = {row["id"]: row for row in json.loads(capsys.readouterr().out)["models"]}
    assert rows["renal"]["trusted"] is True

    # what runs is what was trusted: changed scripts are refused before any of their code runs
    marker = tmp_path / "ran"
    script = model / "bundle" / "scripts" / "my_transforms.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\n" + script.read_text())
    _forget_scripts()
    assert deepmed(["infer", "--model", "renal", *inputs, "-o", str(tmp_path / "again.nii.gz"), "--device", "cpu",
                    "--progress", "none"]) != 0
    assert names(capsys.readouterr().err, "my_transforms.py") and not marker.exists()

    # a trusted model is never shared or installed as a package: code runs only after --trust-code here
    assert deepmed(["zoo", "export", "renal", "-o", str(tmp_path / "renal.zip")]) != 0
    assert "--trust-code" in capsys.readouterr().err
    shutil.copytree(model, tmp_path / "copied")
    (tmp_path / "copied" / "bundle" / "scripts" / "my_transforms.py").write_text(script.read_text())
    from deepmed.zoo.checksums import write_sums

    write_sums(tmp_path / "copied")  # as a forged package would carry them
    assert deepmed(["zoo", "import", str(tmp_path / "copied"), "--id", "forged"]) != 0
    assert "--trust-code" in capsys.readouterr().err and not (tmp_path / "library" / "forged").exists()
