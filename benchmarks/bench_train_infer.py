"""Engine vs. a plain MONAI script (written the way MONAI's tutorials do it), same network, patch and data.

Measures training seconds per iteration and inference seconds per volume, and peak memory (CUDA peak
allocation on a GPU, process RSS growth on the CPU), then prints the ratios engine / MONAI.

    python benchmarks/bench_train_infer.py [--device cpu|cuda] [--iterations 20]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from monai import transforms as mt
from monai.data import CacheDataset, DataLoader, list_data_collate
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.networks.nets import UNet

from deepmed.inference.predictor import Predictor
from deepmed.phantoms.synthetic import write_cohort
from deepmed.training.driver import train

PATCH = [48, 48, 32]
NET = {"channels": [16, 32, 64, 128], "strides": [2, 2, 2], "num_res_units": 1}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else rss_mb()


def bench_engine(manifest: Path, out: Path, device: str, iterations: int) -> dict:
    times = []

    def on_event(event):
        if event["event"] == "iteration":
            times.append(time.perf_counter())

    train(manifest, out, progress=on_event, config={
        "network": {"name": "unet", "args": NET}, "data": {"patch_size": PATCH, "spacing": [1.2, 1.2, 2.0]},
        "augmentation": {"rotate": False, "scale": False, "noise": False, "gamma": False, "contrast": False},
        "training": {"epochs": 1, "iterations_per_epoch": iterations, "batch_size": 2, "device": device,
                     "val_fraction": 0}})
    per_iteration = float(np.median(np.diff(times[2:])))
    predictor = Predictor(out, device)
    image = sitk.ReadImage(str(manifest.parent / "images" / "synth_000.nii.gz"))
    predictor.predict(image, precision="float32")
    start = time.perf_counter()
    for _ in range(3):
        predictor.predict(image, precision="float32")
    return {"train_s_per_it": per_iteration, "infer_s_per_volume": (time.perf_counter() - start) / 3}


def bench_monai(manifest: Path, device: str, iterations: int) -> dict:
    """The tutorial way: LoadImaged -> Orientationd -> Spacingd -> Normalize -> RandCropByPosNegLabeld."""
    import json

    data = json.loads(manifest.read_text())
    files = [{"image": str(manifest.parent / c["image"][0]), "label": str(manifest.parent / c["label"])}
             for c in data["training"]]
    keys = ["image", "label"]
    pre = [mt.LoadImaged(keys, ensure_channel_first=True), mt.Orientationd(keys, axcodes="RAS"),
           mt.Spacingd(keys, pixdim=(1.2, 1.2, 2.0), mode=("bilinear", "nearest")),
           mt.NormalizeIntensityd(["image"], nonzero=True), mt.SpatialPadd(keys, spatial_size=PATCH)]
    train_tf = mt.Compose(pre + [mt.RandCropByPosNegLabeld(keys, "label", spatial_size=PATCH, num_samples=2),
                                 mt.RandFlipd(keys, prob=0.5, spatial_axis=0)])
    loader = DataLoader(CacheDataset(files, train_tf, progress=False), batch_size=2, shuffle=True,
                        collate_fn=list_data_collate)
    model = UNet(spatial_dims=3, in_channels=1, out_channels=3, norm="instance", **NET).to(device)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    times = []
    while len(times) < iterations:
        for batch in loader:
            opt.zero_grad()
            loss = loss_fn(model(batch["image"].to(device)), batch["label"].to(device))
            loss.backward()
            opt.step()
            times.append(time.perf_counter())
            if len(times) >= iterations:
                break
    per_iteration = float(np.median(np.diff(times[2:])))
    infer_tf = mt.Compose(pre[:1] + pre[1:4])
    model.eval()

    def infer_once():
        item = infer_tf({"image": files[0]["image"], "label": files[0]["label"]})
        with torch.inference_mode():
            out = sliding_window_inference(item["image"][None].to(device), PATCH, 2, model, overlap=0.5,
                                           mode="gaussian")
        inverted = mt.Invertd("pred", infer_tf, orig_keys="image")({"pred": out[0].argmax(0, keepdim=True), **item})
        return inverted

    infer_once()
    start = time.perf_counter()
    for _ in range(3):
        infer_once()
    return {"train_s_per_it": per_iteration, "infer_s_per_volume": (time.perf_counter() - start) / 3}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_cohort(Path(tmp) / "data", n_cases=8)
        torch.manual_seed(0)
        monai = bench_monai(manifest, args.device, args.iterations)
        monai["peak_mb"] = peak(args.device)
        engine = bench_engine(manifest, Path(tmp) / "model", args.device, args.iterations)
        engine["peak_mb"] = peak(args.device)
    print(f"device {args.device}, UNet {NET['channels']}, patch {PATCH}, batch 2 x 2 patches")
    print(f"{'':24}{'engine':>10}{'MONAI':>10}{'ratio':>8}")
    for key in ("train_s_per_it", "infer_s_per_volume"):
        print(f"{key:24}{engine[key]:10.3f}{monai[key]:10.3f}{engine[key] / monai[key]:8.2f}")
    print(f"{'peak memory (MB)':24}{engine['peak_mb']:10.0f}{monai['peak_mb']:10.0f}   "
          "(CPU: process max RSS, cumulative)")


if __name__ == "__main__":
    main()
