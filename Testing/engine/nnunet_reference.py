"""Make an nnU-Net v2 result folder and nnU-Net's own predictions with nnunetv2 itself (run as a script in a
subprocess by test_nnunet_import.py: nnunetv2 reads its folders from environment variables at import time).

    python nnunet_reference.py WORK_DIR

WORK_DIR/nnUNet_raw/Dataset901_Brain: 4 small cases cut from a real brain MR (../shared/data/pyradiomics,
0.78 x 0.78 x 6.5 mm, shrunk in-plane) with a threshold label (0 background, 1 brain, 2 bright); nnU-Net's
fingerprint extraction, planning (features_per_stage narrowed afterwards, as a custom plan would) and
preprocessing; two folds of the planned network with seeded random weights saved by nnU-Net's trainer
(``nnUNetTrainer.save_checkpoint``: the same keys as a trained model); then ``nnUNetPredictor`` on a
different real scan (brain2, shrunk 3x in-plane: 2.34 x 2.34 x 6.5 mm, so the separate-z rule resamples it):
WORK_DIR/predictions/fold0_nomirror.nii.gz (fold 0, no mirroring) and folds01_mirror.nii.gz (both folds, mirroring).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pyradiomics"
DATASET_ID, DATASET = 901, "Dataset901_Brain"
CROPS = [((0, 0, 0), (256, 256, 25), 2), ((32, 16, 2), (192, 224, 20), 2), ((16, 40, 0), (224, 200, 22), 3),
         ((0, 0, 4), (240, 240, 21), 2)]
FEATURES = [8, 16, 24, 32, 32, 32, 32, 32]


def test_scan(work: Path) -> Path:
    """The scan both predictors segment: brain2 shrunk 3x in-plane (real geometry, anisotropic)."""
    path = work / "scan_0000.nii.gz"
    if not path.exists():
        sitk.WriteImage(sitk.Shrink(sitk.ReadImage(str(SHARED / "brain2_image.nrrd")), [3, 3, 1]), str(path))
    return path


def write_raw(raw: Path) -> None:
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    source = sitk.ReadImage(str(SHARED / "brain1_image.nrrd"))
    for index, (start, size, shrink) in enumerate(CROPS):
        image = sitk.Shrink(sitk.RegionOfInterest(source, size, start), [shrink, shrink, 1])
        array = sitk.GetArrayFromImage(image).astype(np.float32)
        foreground = array[array > 0]
        label = np.zeros(array.shape, np.uint8)
        label[array > np.percentile(foreground, 50)] = 1
        label[array > np.percentile(foreground, 92)] = 2
        label_image = sitk.GetImageFromArray(label)
        label_image.CopyInformation(image)
        sitk.WriteImage(image, str(raw / "imagesTr" / f"case{index}_0000.nii.gz"))
        sitk.WriteImage(label_image, str(raw / "labelsTr" / f"case{index}.nii.gz"))
    dataset = {"channel_names": {"0": "T1"}, "labels": {"background": 0, "brain": 1, "bright": 2},
               "numTraining": len(CROPS), "file_ending": ".nii.gz", "name": "Brain",
               "description": "test dataset cut from pyradiomics brain1 (BSD-3-Clause)"}
    (raw / "dataset.json").write_text(json.dumps(dataset))


def narrow_plans(plans_file: Path) -> dict:
    """Fewer features per stage (CPU seconds); everything else as nnU-Net planned it."""
    plans = json.loads(plans_file.read_text())
    for config in plans["configurations"].values():
        if "architecture" in config:
            kwargs = config["architecture"]["arch_kwargs"]
            kwargs["features_per_stage"] = FEATURES[:kwargs["n_stages"]]
    plans_file.write_text(json.dumps(plans, indent=2))
    return plans


def make_result_folder(work: Path) -> Path:
    import torch
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    write_raw(work / "nnUNet_raw" / DATASET)
    extract_fingerprints([DATASET_ID], num_processes=1, check_dataset_integrity=True, verbose=False)
    plan_experiments([DATASET_ID])
    preprocessed = work / "nnUNet_preprocessed" / DATASET
    plans = narrow_plans(preprocessed / "nnUNetPlans.json")
    preprocess([DATASET_ID], configurations=("3d_fullres",), num_processes=(1,), verbose=False)
    dataset = json.loads((preprocessed / "dataset.json").read_text())
    result = None
    for fold in (0, 1):
        torch.manual_seed(fold)
        fold_plans = {**plans, "continue_training": False}  # what nnunetv2's run_training adds
        trainer = nnUNetTrainer(fold_plans, "3d_fullres", fold, dataset, device=torch.device("cpu"))
        trainer.initialize()
        trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()  # sets the allowed mirroring axes
        with torch.no_grad():  # a random network that still predicts several labels (shifted class biases)
            head = trainer.network.decoder.seg_layers[-1]
            head.bias.copy_(torch.tensor([0.0, 0.3, -0.2]))
        Path(trainer.output_folder).mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(str(Path(trainer.output_folder) / "checkpoint_final.pth"))
        result = Path(trainer.output_folder_base)
    shutil.copy(preprocessed / "dataset.json", result / "dataset.json")
    shutil.copy(preprocessed / "nnUNetPlans.json", result / "plans.json")
    shutil.copy(preprocessed / "dataset_fingerprint.json", result / "dataset_fingerprint.json")
    return result


def predict(result: Path, scan: Path, out: Path, folds, mirroring: bool) -> None:
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                                perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(result), use_folds=folds, checkpoint_name="checkpoint_final.pth")
    predictor.predict_from_files_sequential([[str(scan)]], [str(out)], save_probabilities=False, overwrite=True)


def main(work: Path) -> None:
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (work / name).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(work / name)
    result = make_result_folder(work)
    scan = test_scan(work)
    (work / "predictions").mkdir()
    predict(result, scan, work / "predictions" / "fold0_nomirror", (0,), mirroring=False)
    predict(result, scan, work / "predictions" / "folds01_mirror", (0, 1), mirroring=True)
    (work / "result_folder.txt").write_text(str(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
