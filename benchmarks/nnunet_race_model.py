"""A realistic nnU-Net v2 result folder made by nnunetv2 itself, for racing its predictor against deepmed.

The dataset is the shared TotalSegmentator example CT (``../shared/data/totalsegmentator``) resampled at
1.5 mm, as three cases (the whole scan and two crops), with the ``classes - 1`` largest structures of
``example_seg.nii.gz`` as labels 1.. . nnU-Net's own fingerprint extraction, planner (default
``ExperimentPlanner``: its patch, strides and default network width) and preprocessing run on it; the planned
3d_fullres network gets seeded random weights and is saved by nnU-Net's trainer (``save_checkpoint``), so
the folder is exactly what ``nnUNetv2_train`` leaves (``fold_0/checkpoint_final.pth``, ``plans.json``,
``dataset.json``). Speed and memory do not depend on the weights' values.

nnunetv2 reads its folders from environment variables when it is imported, so the folder is made in a
separate process:

    from nnunet_race_model import make_nnunet_result_folder
    result = make_nnunet_result_folder(Path("work"))        # -> work/nnUNet_results/Dataset950_RaceCT/...

or ``python benchmarks/nnunet_race_model.py WORK_DIR [--classes 7]`` (prints the result folder).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "totalsegmentator"
DATASET_ID, DATASET = 950, "Dataset950_RaceCT"
SPACING_MM = 1.5
CROPS = [None, ((0, 0, 0), (1.0, 0.8, 0.8)), ((0, 0.2, 0.15), (0.85, 0.8, 0.85))]  # (start, size) as fractions
CONFIGURATION = "3d_fullres"


def _resampled(image: sitk.Image, spacing: float, interpolator) -> sitk.Image:
    size = [round(n * s / spacing) for n, s in zip(image.GetSize(), image.GetSpacing())]
    return sitk.Resample(image, size, sitk.Transform(), interpolator, image.GetOrigin(), [spacing] * 3,
                         image.GetDirection(), -1024 if interpolator != sitk.sitkNearestNeighbor else 0)


def _label_map(seg: sitk.Image, classes: int) -> sitk.Image:
    """The ``classes - 1`` largest structures as labels 1.. (by size), the rest background."""
    array = sitk.GetArrayFromImage(seg)
    values, counts = np.unique(array[array > 0], return_counts=True)
    largest = values[np.argsort(-counts)][:classes - 1]
    out = np.zeros(array.shape, np.uint8)
    for label, value in enumerate(largest, start=1):
        out[array == value] = label
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(seg)
    return image


def write_raw(raw: Path, classes: int) -> None:
    """nnU-Net's raw dataset: imagesTr/labelsTr and dataset.json."""
    (raw / "imagesTr").mkdir(parents=True, exist_ok=True)
    (raw / "labelsTr").mkdir(exist_ok=True)
    ct = _resampled(sitk.ReadImage(str(SHARED / "example_ct_sm.nii.gz")), SPACING_MM, sitk.sitkLinear)
    seg = _resampled(_label_map(sitk.ReadImage(str(SHARED / "example_seg.nii.gz")), classes), SPACING_MM,
                     sitk.sitkNearestNeighbor)
    for index, crop in enumerate(CROPS):
        image, label = ct, seg
        if crop is not None:
            size = ct.GetSize()
            start = [int(f * n) for f, n in zip(crop[0], size)]
            extent = [min(int(f * n), n - s) for f, n, s in zip(crop[1], size, start)]
            image = sitk.RegionOfInterest(ct, extent, start)
            label = sitk.RegionOfInterest(seg, extent, start)
        sitk.WriteImage(image, str(raw / "imagesTr" / f"case{index}_0000.nii.gz"))
        sitk.WriteImage(label, str(raw / "labelsTr" / f"case{index}.nii.gz"))
    labels = {"background": 0, **{f"structure_{k}": k for k in range(1, classes)}}
    dataset = {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": len(CROPS), "file_ending": ".nii.gz",
               "name": "RaceCT", "description": "made from the TotalSegmentator example CT (Apache-2.0)"}
    (raw / "dataset.json").write_text(json.dumps(dataset))


def build(work: Path, classes: int, seed: int = 0) -> Path:
    """Run inside a process whose nnUNet_* environment points into ``work`` (see :func:`main`)."""
    import torch
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    torch.set_num_threads(2)
    write_raw(work / "nnUNet_raw" / DATASET, classes)
    extract_fingerprints([DATASET_ID], num_processes=1, check_dataset_integrity=True, verbose=False)
    plan_experiments([DATASET_ID])
    preprocessed = work / "nnUNet_preprocessed" / DATASET
    preprocess([DATASET_ID], configurations=(CONFIGURATION,), num_processes=(1,), verbose=False)
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    dataset = json.loads((preprocessed / "dataset.json").read_text())
    torch.manual_seed(seed)
    trainer = nnUNetTrainer({**plans, "continue_training": False}, CONFIGURATION, 0, dataset,
                            device=torch.device("cpu"))
    trainer.initialize()
    trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()  # sets the allowed mirroring axes
    with torch.no_grad():  # random weights that still predict every class somewhere: spread the class biases
        head = trainer.network.decoder.seg_layers[-1]
        head.bias.copy_(torch.linspace(0.5, -0.5, classes))
    Path(trainer.output_folder).mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(str(Path(trainer.output_folder) / "checkpoint_final.pth"))
    result = Path(trainer.output_folder_base)
    for name, target in (("dataset.json", "dataset.json"), ("nnUNetPlans.json", "plans.json"),
                         ("dataset_fingerprint.json", "dataset_fingerprint.json")):
        shutil.copy(preprocessed / name, result / target)
    return result


def make_nnunet_result_folder(out_dir: Path, classes: int = 7, seed: int = 0) -> Path:
    """Make (once) the result folder under ``out_dir`` with nnunetv2 in a subprocess; its path."""
    out_dir = Path(out_dir).resolve()
    marker = out_dir / "result_folder.txt"
    if not marker.is_file():
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(out_dir), "--classes",
                               str(classes), "--seed", str(seed)], capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            raise RuntimeError(f"nnunetv2 could not make the result folder in {out_dir}: {tail}")
    return Path(marker.read_text().strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--classes", type=int, default=7, help="labels including background")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = args.work.resolve()
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (work / name).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(work / name)
    result = build(work, args.classes, args.seed)
    (work / "result_folder.txt").write_text(str(result))
    print(result)


if __name__ == "__main__":
    main()
