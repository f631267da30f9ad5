"""`deepmed dataset check` reports every problem, one line each, and prints the fingerprint."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import SimpleITK as sitk
from conftest import make_image, make_label
from naming import names

from deepmed.cli.main import main
from deepmed.data import Dataset
from deepmed.data.check import check_dataset


def _problems(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("problem: ")]


def test_clean_dataset_prints_fingerprint(toy_dataset, capsys):
    assert main(["dataset", "check", str(toy_dataset)]) == 0
    out = capsys.readouterr().out
    assert "3 case(s)" in out and "channels: 2" in out
    assert "spacing  median 0.7 x 1.3 x 3.1 mm" in out
    assert "intensity [T1]" in out and "label voxels: background" in out
    assert "OK, no problems found" in out


def test_fingerprint_values(toy_dataset):
    report = check_dataset(Dataset.load(toy_dataset))
    fp = report.fingerprint
    assert report.ok
    assert fp["size"]["median"] == [8, 7, 6]
    label = sitk.GetArrayFromImage(make_label(make_image()))
    assert fp["label_voxels"]["a"] == 3 * np.count_nonzero(label == 1)
    assert 90 < fp["intensity"]["T1"]["all"]["mean"] < 110


def test_every_problem_reported_at_once(toy_dataset, capsys):
    root = toy_dataset.parent
    data = json.loads(toy_dataset.read_text())
    # case0: label on another grid; case1: undeclared label value and NaN voxels; case2: channels on two grids.
    sitk.WriteImage(make_label(make_image(origin=(0, 0, 0))), str(root / "case0_seg.nii.gz"))
    sitk.WriteImage(make_label(make_image(), values=(1, 5)), str(root / "case1_seg.nii.gz"))
    nan_image = make_image(seed=1)
    array = sitk.GetArrayFromImage(nan_image)
    array[0, 0, :3] = np.nan
    bad = sitk.GetImageFromArray(array)
    bad.CopyInformation(nan_image)
    sitk.WriteImage(bad, str(root / "case1_t1.nrrd"))  # ITK's NIfTI I/O turns NaN into 0; NRRD keeps them
    data["training"][1]["image"][0] = "case1_t1.nrrd"
    sitk.WriteImage(make_image(spacing=(1, 1, 1)), str(root / "case2_t2.nii.gz"))
    # case3: missing file; case4: truncated file; case5: 2D image
    sitk.WriteImage(sitk.Image(5, 5, sitk.sitkFloat32), str(root / "flat.nii.gz"))
    whole = (root / "case0_t1.nii.gz").read_bytes()
    (root / "cut.nii.gz").write_bytes(whole[: len(whole) // 2])
    data["training"] += [
        {"image": ["missing.nii.gz", "case0_t2.nii.gz"], "label": "case0_seg.nii.gz", "id": "case3"},
        {"image": ["cut.nii.gz", "case0_t2.nii.gz"], "label": "case0_seg.nii.gz", "id": "case4"},
        {"image": ["flat.nii.gz", "flat.nii.gz"], "label": "case0_seg.nii.gz", "id": "case5"},
    ]
    toy_dataset.write_text(json.dumps(data))
    assert main(["dataset", "check", str(toy_dataset)]) == 2
    problems = _problems(capsys.readouterr().out)
    text = "\n".join(problems)
    # one problem per line, each naming the case, the file and the offending values
    for tokens in [("case0", "case0_seg.nii.gz", "origin", "(0, 0, 0)", "(-12.5, 40.25, 7)"),
                   ("case1", "case1_seg.nii.gz", "[5]", "'labels'", "[0, 1, 2]"),
                   ("case1", "case1_t1.nrrd", "3 NaN/Inf"),
                   ("case2", "case2_t2.nii.gz", "channel 1", "spacing", "(1, 1, 1)", "(0.7, 1.3, 3.1)"),
                   ("case3", "missing.nii.gz"),
                   ("case4", "cut.nii.gz", "truncated"),
                   ("case5", "flat.nii.gz", "3D", "2D")]:
        assert any(names(problem, *tokens) for problem in problems), (tokens, text)
    assert len(problems) == 7


def test_wrong_channel_count(toy_dataset, capsys):
    data = json.loads(toy_dataset.read_text())
    data["training"][0]["image"] = data["training"][0]["image"][:1]
    toy_dataset.write_text(json.dumps(data))
    assert main(["dataset", "check", str(toy_dataset)]) == 2
    assert names(capsys.readouterr().out, "case0", "case0_t1.nii.gz", "T1, T2")


def test_structural_errors_exit_2_without_traceback(tmp_path):
    (tmp_path / "d.json").write_text('{"name": "x", "trainin": []')
    result = subprocess.run([sys.executable, "-m", "deepmed", "dataset", "check", str(tmp_path / "d.json")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert names(result.stderr, "d.json", "line 1", "column 28")
    (tmp_path / "d.json").write_text('{"name": "x", "trainin": []}')
    result = subprocess.run([sys.executable, "-m", "deepmed", "dataset", "check", str(tmp_path / "d.json")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert names(result.stdout, "'trainin'", "'training'")
    assert "Traceback" not in result.stderr + result.stdout


def test_scan_and_check_real_scans(shared_data, tmp_path, capsys):
    out = tmp_path / "brain.json"
    assert main(["dataset", "scan", str(shared_data / "pyradiomics"), "--contains", "brain", "-o", str(out)]) == 0
    assert main(["dataset", "check", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2 case(s)" in text and "OK, no problems found" in text
    assert "spacing  median 0.78125 x 0.78125 x 6.5 mm" in text

    ts = tmp_path / "ct.json"
    assert main(["dataset", "scan", str(shared_data / "totalsegmentator"), "--image", "_ct", "--label", "_seg",
                 "--label-not-contains", "_mr", "--remove-from-id", "_sm$", "--channel-name", "CT", "-o", str(ts)]) == 0
    assert main(["dataset", "check", str(ts)]) == 0
    text = capsys.readouterr().out
    assert "max 512 x 512 x 30" in text and "intensity [CT]" in text and "OK, no problems found" in text

    mr = tmp_path / "mr.json"
    assert main(["dataset", "scan", str(shared_data / "totalsegmentator"), "--image", "_mr_sm", "--label",
                 "_seg_mr", "--channel-name", "MR", "-o", str(mr)]) == 0
    assert main(["dataset", "check", str(mr)]) == 0
    assert "117 x 91 x 20" in capsys.readouterr().out


def test_scan_refuses_to_overwrite(toy_dataset, capsys):
    assert main(["dataset", "scan", str(toy_dataset.parent), "-o", str(toy_dataset)]) == 2
    assert names(capsys.readouterr().err, str(toy_dataset), "--force")


def test_split_command(toy_dataset, capsys):
    assert main(["dataset", "split", str(toy_dataset), "--folds", "3", "--seed", "1"]) == 0
    assert len(json.loads(toy_dataset.read_text())["splits"]) == 3
    assert main(["dataset", "split", str(toy_dataset), "--fractions", "0.4", "0.3", "0.3"]) == 0
    splits = json.loads(toy_dataset.read_text())["splits"]
    assert len(splits) == 1 and set(splits[0]) == {"train", "val", "test"}
    assert main(["dataset", "split", str(toy_dataset), "--folds", "4"]) == 2
    assert names(capsys.readouterr().err, "--folds 4", "3")


def _put_nonfinite(path, values, dtype=np.float32):
    """Rewrite a NIfTI file with NaN/Inf in its stored data (nibabel writes them; ITK would read 0)."""
    import nibabel as nib

    image = nib.load(str(path))
    array = np.asarray(image.dataobj).astype(dtype)
    array[np.unravel_index(np.arange(len(values)), array.shape)] = values
    rewritten = nib.Nifti1Image(array, image.affine, image.header)
    rewritten.set_data_dtype(dtype)
    nib.save(rewritten, str(path))
    assert np.isfinite(sitk.GetArrayFromImage(sitk.ReadImage(str(path)))).all()  # what ITK alone sees


def test_nan_and_inf_in_nifti_are_reported(toy_dataset, capsys, monkeypatch):
    from deepmed.io import nifti_finite

    monkeypatch.setattr(nifti_finite, "SLAB_VOXELS", 50)  # several slabs on these tiny volumes
    root = toy_dataset.parent
    _put_nonfinite(root / "case0_t2.nii.gz", [np.nan, np.inf, -np.inf, np.nan])
    _put_nonfinite(root / "case2_seg.nii.gz", [np.nan, np.nan])
    assert nifti_finite.count_nonfinite_nifti(root / "case0_t2.nii.gz") == 4
    assert nifti_finite.count_nonfinite_nifti(root / "case0_t1.nii.gz") == 0
    assert main(["dataset", "check", str(toy_dataset)]) == 2
    problems = _problems(capsys.readouterr().out)
    assert problems == ["problem: case case0: case0_t2.nii.gz: 4 NaN/Inf voxel(s)",
                        "problem: case case2: case2_seg.nii.gz: 2 NaN/Inf voxel(s) in the label"]
