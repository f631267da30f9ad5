"""nnU-Net v2's other configurations made and run by nnunetv2 itself (2d, 3d_lowres -> 3d_cascade_fullres,
a cross-configuration ensemble, determined post-processing), run as a script in a subprocess by
test_nnunet_configurations.py (nnunetv2 reads its folders from environment variables at import time).

    python nnunet_configurations_reference.py WORK_DIR

The raw data are nnunet_reference.py's (cases cut from the real brain MR pyradiomics/brain1). nnU-Net's planner
is given a small GPU-memory target so that its own rule plans a small 3d_fullres patch and therefore a
3d_lowres stage and the 3d_cascade_fullres configuration (features narrowed afterwards, as a custom plan would).
Two folds of 2d, 3d_lowres and 3d_cascade_fullres are saved by nnU-Net's trainer (seeded random weights), then:

* ``nnUNetPredictor`` on the brain2 test scan: 2d (folds 0,1, mirroring) -> predictions/2d.nii.gz; without
  mirroring and with probabilities: 2d, 3d_lowres, then 3d_cascade_fullres fed with the 3d_lowres
  segmentation (``folder_with_segs_from_prev_stage``) -> predictions/{2d_nm,3d_lowres,cascade}/scan.*;
* ``nnUNetv2_ensemble``'s ``ensemble_folders`` of 2d and the cascade -> predictions/ensemble/scan.nii.gz;
* nnU-Net's ``determine_postprocessing`` on made predictions with stray islands (so that removing all but the
  largest component wins) writes ``postprocessing.json`` (and .pkl) into the ensemble folder
  nnUNet_results/Dataset902_Brain/ensembles/ensemble___...___0_1, and ``apply_postprocessing`` with that pkl on
  the ensemble's prediction -> predictions/ensemble_pp.nii.gz.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nnunet_reference import FEATURES, test_scan, write_raw

DATASET_ID, DATASET = 902, "Dataset902_Brain"
CONFIGURATIONS = ("2d", "3d_lowres", "3d_cascade_fullres")
GPU_MEMORY_GB = 0.05  # small: nnU-Net's planner then picks a small fullres patch and adds a lowres stage


def narrow(plans_file: Path) -> dict:
    plans = json.loads(plans_file.read_text())
    for config in plans["configurations"].values():
        if "architecture" in config:
            kwargs = config["architecture"]["arch_kwargs"]
            kwargs["features_per_stage"] = [f // 2 for f in FEATURES[:kwargs["n_stages"]]]
    plans_file.write_text(json.dumps(plans, indent=2))
    return plans


def make_checkpoints(work: Path) -> dict[str, Path]:
    import torch
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    write_raw(work / "nnUNet_raw" / DATASET)
    raw_json = work / "nnUNet_raw" / DATASET / "dataset.json"
    raw_json.write_text(raw_json.read_text().replace('"description": "', '"licence": "BSD-3-Clause", "description": "'))
    extract_fingerprints([DATASET_ID], num_processes=1, check_dataset_integrity=True, verbose=False)
    plan_experiments([DATASET_ID], gpu_memory_target_in_gb=GPU_MEMORY_GB)
    preprocessed = work / "nnUNet_preprocessed" / DATASET
    plans = narrow(preprocessed / "nnUNetPlans.json")
    missing = [c for c in CONFIGURATIONS if c not in plans["configurations"]]
    assert not missing, f"nnU-Net did not plan {missing}: {list(plans['configurations'])}"
    preprocess([DATASET_ID], configurations=("2d", "3d_lowres", "3d_fullres"), num_processes=(1, 1, 1),
               verbose=False)  # the trainer looks at the preprocessed folder
    dataset = json.loads((preprocessed / "dataset.json").read_text())
    results = {}
    for name in CONFIGURATIONS:
        for fold in (0, 1):
            torch.manual_seed(10 * fold + len(name))
            trainer = nnUNetTrainer({**plans, "continue_training": False}, name, fold, dataset,
                                    device=torch.device("cpu"))
            trainer.initialize()
            trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
            with torch.no_grad():  # random weights that still predict every label
                trainer.network.decoder.seg_layers[-1].bias.copy_(torch.tensor([0.0, 0.3, -0.2]))
            Path(trainer.output_folder).mkdir(parents=True, exist_ok=True)
            trainer.save_checkpoint(str(Path(trainer.output_folder) / "checkpoint_final.pth"))
            results[name] = Path(trainer.output_folder_base)
        shutil.copy(preprocessed / "dataset.json", results[name] / "dataset.json")
        shutil.copy(preprocessed / "nnUNetPlans.json", results[name] / "plans.json")
    return results


def predictor(result: Path, mirroring: bool):
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                                perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(result), use_folds=(0, 1), checkpoint_name="checkpoint_final.pth")
    return predictor


def write_postprocessing(work: Path, ensemble_folder: Path, dataset: dict, plans: dict) -> None:
    """nnU-Net's determine_postprocessing on made cases where keeping the largest component helps."""
    from nnunetv2.postprocessing.remove_connected_components import determine_postprocessing

    predictions, reference = work / "pp_predictions", work / "pp_reference"
    predictions.mkdir()
    reference.mkdir()
    rng = np.random.default_rng(3)
    for case in range(3):
        label = np.zeros((12, 40, 40), np.uint8)
        label[3:9, 8:30, 8:30] = 1
        label[4:8, 12:20, 12:20] = 2
        predicted = label.copy()
        for value in (1, 2):  # stray islands of each label, away from the object
            z, y = int(rng.integers(0, 10)), int(rng.integers(32, 37))
            predicted[z:z + 2, y:y + 3, 34:37] = value
        for folder, array in ((reference, label), (predictions, predicted)):
            image = sitk.GetImageFromArray(array)
            image.SetSpacing((1.5, 1.5, 6.5))
            sitk.WriteImage(image, str(folder / f"case{case}.nii.gz"))
    determine_postprocessing(str(predictions), str(reference), plans, dataset, num_processes=1,
                             keep_postprocessed_files=False)
    for name in ("postprocessing.json", "postprocessing.pkl"):
        shutil.copy(predictions / name, ensemble_folder / name)


def main(work: Path) -> None:
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (work / name).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(work / name)
    results = make_checkpoints(work)
    from batchgenerators.utilities.file_and_folder_operations import load_pickle
    from nnunetv2.ensembling.ensemble import ensemble_folders
    from nnunetv2.postprocessing.remove_connected_components import apply_postprocessing

    scan = test_scan(work)
    out = work / "predictions"
    out.mkdir()
    predictor(results["2d"], True).predict_from_files_sequential([[str(scan)]], [str(out / "2d")], False, True)
    runs = (("2d", "2d_nm", None), ("3d_lowres", "3d_lowres", None), ("3d_cascade_fullres", "cascade", "3d_lowres"))
    for name, folder, previous in runs:
        (out / folder).mkdir()
        predictor(results[name], False).predict_from_files_sequential(
            [[str(scan)]], [str(out / folder / "scan")], True, True,
            folder_with_segs_from_prev_stage=str(out / previous) if previous else None)
    ensemble_folders([str(out / "2d_nm"), str(out / "cascade")], str(out / "ensemble"), num_processes=1,
                     dataset_json_file_or_dict=str(results["2d"] / "dataset.json"),
                     plans_json_file_or_dict=str(results["2d"] / "plans.json"))
    name = f"ensemble___{results['2d'].name}___{results['3d_cascade_fullres'].name}___0_1"
    ensemble_folder = work / "nnUNet_results" / DATASET / "ensembles" / name
    ensemble_folder.mkdir(parents=True)
    dataset = json.loads((results["2d"] / "dataset.json").read_text())
    plans = json.loads((results["2d"] / "plans.json").read_text())
    write_postprocessing(work, ensemble_folder, dataset, plans)
    functions, kwargs = load_pickle(str(ensemble_folder / "postprocessing.pkl"))
    ensemble = sitk.ReadImage(str(out / "ensemble" / "scan.nii.gz"))
    processed = sitk.GetImageFromArray(apply_postprocessing(sitk.GetArrayFromImage(ensemble), functions, kwargs))
    processed.CopyInformation(ensemble)
    sitk.WriteImage(processed, str(out / "ensemble_pp.nii.gz"))
    (work / "results.json").write_text(json.dumps({k: str(v) for k, v in results.items()} |
                                                  {"ensemble": str(ensemble_folder)}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
