"""Batch inference is the engine's (``Predictor.predict_many``), the CLI only parses: the same cases give the same
files either way; a bad case is skipped with its reason, not the batch; nothing is overwritten without --force."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from test_training import trained_segmentation  # noqa: F401  (a fixture shared with test_training)

from deepmed.cli.main import main
from deepmed.errors import DeepMedError
from deepmed.inference.batch import CaseJob, ExtraOutputs
from deepmed.inference.options import InferenceOptions
from deepmed.inference.predictor import Predictor
from deepmed.io import grid_differences


@pytest.fixture(scope="module")
def folder_of_cases(trained_segmentation, tmp_path_factory):  # noqa: F811
    manifest, model_dir, _ = trained_segmentation
    folder = tmp_path_factory.mktemp("batch_in")
    for name in ("c0", "c1"):
        sitk.WriteImage(sitk.ReadImage(str(manifest.parent / f"{name}.nii.gz")), str(folder / f"{name}.nii.gz"))
    return model_dir, folder


def test_predict_many_writes_every_case_on_its_grid_and_reports_progress(folder_of_cases, tmp_path):
    model_dir, folder = folder_of_cases
    events = []
    result = Predictor(model_dir, "cpu").predict_many(folder, output=tmp_path / "out",
                                                      extras=ExtraOutputs(uncertainty=tmp_path / "unc"),
                                                      emit=lambda event, **fields: events.append((event, fields)))
    assert [o.case_id for o in result.done] == ["c0", "c1"] and not result.skipped
    for outcome in result.done:
        image = sitk.ReadImage(str(folder / f"{outcome.case_id}.nii.gz"))
        assert grid_differences(sitk.ReadImage(str(outcome.output)), image) == []
        assert grid_differences(sitk.ReadImage(str(tmp_path / "unc" / f"{outcome.case_id}.nii.gz")), image) == []
    assert [(e, f["case"], f["index"], f["total"]) for e, f in events] == [("inference", "c0", 0, 2),
                                                                          ("inference", "c1", 1, 2)]
    assert result.table == tmp_path / "out" / "results.csv"  # a segmentation's values: its uncertainty score
    assert result.table.read_text().splitlines()[0] == "case,uncertainty,uncertainty_band_voxels"


def test_the_cli_gives_the_same_files_as_predict_many(folder_of_cases, tmp_path):
    model_dir, folder = folder_of_cases
    Predictor(model_dir, "cpu").predict_many(folder, InferenceOptions(tta_flips=True), output=tmp_path / "api")
    assert main(["infer", "--model", str(model_dir), str(folder), "-o", str(tmp_path / "cli"), "--device", "cpu",
                 "--tta", "--progress", "none"]) == 0
    for name in ("c0", "c1"):
        api, cli = (sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / side / f"{name}.nii.gz")))
                    for side in ("api", "cli"))
        np.testing.assert_array_equal(api, cli)


def test_a_bad_case_is_skipped_with_its_reason_and_all_bad_is_an_error(folder_of_cases, tmp_path):
    model_dir, folder = folder_of_cases
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not an image")
    good = CaseJob("c0", (folder / "c0.nii.gz",), tmp_path / "c0_out.nii.gz")
    bad = CaseJob("broken", (broken,), tmp_path / "broken_out.nii.gz")
    predictor = Predictor(model_dir, "cpu")
    result = predictor.predict_many([bad, good])
    assert [o.case_id for o in result.done] == ["c0"]
    assert result.skipped[0].case_id == "broken" and "broken.nii.gz" in result.skipped[0].skipped
    assert not (tmp_path / "broken_out.nii.gz").exists()
    with pytest.raises(DeepMedError, match="broken"):
        predictor.predict_many([bad], force=True)
    with pytest.raises(DeepMedError, match="broken.nii.gz"):
        predictor.predict_many([bad], keep_going=False)


def test_existing_results_are_refused_before_any_work(folder_of_cases, tmp_path):
    model_dir, folder = folder_of_cases
    out = tmp_path / "out"
    out.mkdir()
    (out / "c1.nii.gz").write_bytes(b"the user's file")
    with pytest.raises(DeepMedError, match="c1.nii.gz"):
        Predictor(model_dir, "cpu").predict_many(folder, output=out)
    assert not (out / "c0.nii.gz").exists() and (out / "c1.nii.gz").read_bytes() == b"the user's file"


@pytest.mark.parametrize("overlap", [-0.1, 1.0, 3])
def test_options_are_checked_where_they_are_made(overlap, capsys, folder_of_cases, tmp_path):
    with pytest.raises(DeepMedError, match="overlap"):
        InferenceOptions(overlap=overlap)
    model_dir, folder = folder_of_cases
    code = main(["infer", "--model", str(model_dir), str(folder / "c0.nii.gz"), "-o", str(tmp_path / "o.nii.gz"),
                 "--overlap", str(overlap)])
    err = capsys.readouterr().err
    assert code != 0 and "overlap" in err and "Traceback" not in err
    assert not (tmp_path / "o.nii.gz").exists()


@pytest.mark.slow
def test_torchrun_shares_a_batch_across_ranks_with_the_single_process_result(folder_of_cases, tmp_path):
    """``torchrun --nproc_per_node=2 -m deepmed infer``: each case once, files identical to one process, one
    summary (rank 0's)."""
    import json
    import os
    import subprocess
    import sys

    model_dir, folder = folder_of_cases
    cases = tmp_path / "cases"
    cases.mkdir()
    for index, name in enumerate(["c0", "c1", "c0", "c1", "c0"]):  # five cases: an uneven share
        (cases / f"case{index}.nii.gz").write_bytes((folder / f"{name}.nii.gz").read_bytes())
    Predictor(model_dir, "cpu").predict_many(cases, output=tmp_path / "single")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "deepmed", "infer", "--model", str(model_dir), str(cases), "-o", str(tmp_path / "ranks"),
                           "--device", "cpu", "--progress", "jsonl"],
                          capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    events = [json.loads(line[line.find("{"):]) for line in done.stdout.splitlines() if "{" in line]
    assert sorted(e["case"] for e in events if e["event"] == "inference") == ["case0", "case2", "case4"]  # rank 0's
    summary = [e for e in events if e["event"] == "batch"]
    assert len(summary) == 1 and summary[0]["ranks"] == 2  # one summary, every case once
    assert [c["case"] for c in summary[0]["cases"]] == [f"case{i}" for i in range(5)]
    for index in range(5):
        single, shared = (sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / side / f"case{index}.nii.gz")))
                          for side in ("single", "ranks"))
        np.testing.assert_array_equal(single, shared)
