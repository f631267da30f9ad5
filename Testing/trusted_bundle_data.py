"""A real MONAI Model Zoo bundle that needs its own code (renalStructures_CECT_segmentation, configs and
scripts as published), with random weights and one case in its data layout: for the trusted-bundle tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

RENAL = Path(__file__).resolve().parent / "data" / "monai_configs" / "renalStructures_CECT_segmentation"
PHASES = ("12", "22-", "32-")  # the bundle's file names for the artery, vein and excretory phases


def renal_bundle(folder: Path) -> Path:
    """The real bundle with random weights where its CheckpointLoader looks, and one case in its data layout."""
    from monai.networks.nets import SegResNet

    bundle = folder / "renal"
    shutil.copytree(RENAL, bundle)
    torch.manual_seed(0)
    network = SegResNet(in_channels=3, out_channels=6, init_filters=32, upsample_mode="deconv", dropout_prob=0.2,
                        norm_name="group", blocks_down=[1, 2, 2, 4], blocks_up=[1, 1, 1])
    with torch.no_grad():  # several labels win somewhere: a meaningful comparison
        network.conv_final[-1].conv.weight.mul_(2)
        network.conv_final[-1].conv.bias.copy_(torch.tensor([0.0, -2.0, -1.0, -0.5, -0.2, 0.0]))
    (bundle / "models").mkdir()
    torch.save(network.state_dict(), bundle / "models" / "model.pt")
    case = bundle / "data" / "case0"
    case.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index, name in enumerate([*PHASES, "merged"]):
        array = rng.normal(0, 100, (20, 26, 24)).astype(np.float32)
        array[4:14, 5:20, 3:12] += 400 + 200 * index
        array[2:10, 12:24, 14:22] -= 500 - 150 * index
        image = sitk.GetImageFromArray(array if name != "merged" else np.zeros_like(array, dtype=np.uint8))
        image.SetSpacing((1.7, 1.5, 2.0))
        image.SetOrigin((10.0, -20.0, 5.0))
        image.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))  # not RAS: the bundle reorients and inverts
        sitk.WriteImage(image, str(case / f"{name}.nii.gz"))
    return bundle


def forget_scripts() -> None:
    """Drop every imported ``scripts`` package: each bundle calls its own code ``scripts``."""
    import sys

    for name in [n for n in sys.modules if n == "scripts" or n.startswith("scripts.")]:
        del sys.modules[name]


def run_bundle_evaluator(bundle: Path, values: dict | None = None, initialize: bool = False,
                         output_dir: Path | None = None, written: str = "**/*.nii.gz") -> sitk.Image:
    """The bundle run by MONAI as ``python -m monai.bundle run`` would (its ``SupervisedEvaluator`` and
    ``SaveImaged``), on the CPU without worker processes, with ``values`` set in its config; ``initialize`` runs
    the config's ``initialize`` list first (where a bundle's CheckpointLoader fills the network). Returns the one
    image matching ``written`` under ``output_dir`` (default: the bundle's ``eval``)."""
    import sys

    import pytest

    pytest.importorskip("ignite", reason="the reference runs the bundle's own SupervisedEvaluator (pytorch-ignite)")
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    parser["device"] = torch.device("cpu")
    parser["dataloader#num_workers"] = 0
    for key, value in (values or {}).items():
        parser[key] = value
    if output_dir is not None:
        parser["output_dir"] = str(output_dir)
    forget_scripts()
    sys.path.insert(0, str(bundle))
    try:
        if initialize:
            parser.get_parsed_content("initialize")
        parser.get_parsed_content("evaluator").run()
    finally:
        sys.path.remove(str(bundle))
        forget_scripts()
    (path,) = Path(output_dir or bundle / "eval").glob(written)
    return sitk.ReadImage(str(path))
