"""Inference at clinical scale: a 42-class model on a 512x512xN CT, engine vs the plain MONAI pipeline.

The plain pipeline is MONAI's tutorial way: LoadImaged -> Orientationd -> Spacingd -> ScaleIntensityRanged ->
sliding_window_inference -> softmax -> Invertd (every class back onto the input grid) -> argmax. The engine
runs the same network (same weights, patch, overlap) through ``Predictor``. Each side runs in its own process,
so peak RSS is its own. The CT is the shared TotalSegmentator example resampled to 512x512xN; weights are
random (speed and memory do not depend on them).

    python benchmarks/bench_large_ct.py [--slices 150] [--classes 42] [--device cpu] [--profile]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
SHARED_CT = REPO.parent / "shared" / "data" / "totalsegmentator" / "example_ct_sm.nii.gz"
NET = {"spatial_dims": 3, "in_channels": 1, "channels": [16, 32, 64, 128], "strides": [2, 2, 2],
       "num_res_units": 1, "norm": "instance"}
PATCH = [96, 96, 96]
SPACING = [1.5, 1.5, 1.5]


def make_large_ct(path: Path, slices: int) -> Path:
    """The shared example CT resampled to 512 x 512 x ``slices`` over the same physical box."""
    source = sitk.ReadImage(str(SHARED_CT))
    size = [512, 512, slices]
    spacing = [sz * sp / n for sz, sp, n in zip(source.GetSize(), source.GetSpacing(), size)]
    reference = sitk.Image(size, sitk.sitkInt16)
    reference.SetSpacing(spacing)
    reference.SetDirection(source.GetDirection())
    shift = np.asarray(source.GetDirection()).reshape(3, 3) @ ((np.asarray(spacing) - source.GetSpacing()) / 2)
    reference.SetOrigin(list(np.asarray(source.GetOrigin()) + shift))
    sitk.WriteImage(sitk.Resample(source, reference, sitk.Transform(), sitk.sitkLinear, -1024), str(path))
    return path


def make_model(folder: Path, classes: int) -> Path:
    import torch

    from deepmed.model.weights import save_weights
    from deepmed.networks import build_network

    torch.manual_seed(0)
    args = {**NET, "out_channels": classes}
    card = {"format": "deepmed-model/1", "application": "segmentation", "output_kind": "label_map",
            "inputs": [{"name": "CT", "normalization": "ct",
                        "statistics": {"mean": 40.0, "std": 200.0, "p0_5": -1000.0, "p99_5": 1000.0}}],
            "labels": [{"value": v, "name": "background" if v == 0 else f"organ_{v}"} for v in range(classes)],
            "spacing": SPACING, "orientation": "LPS", "patch_size": PATCH, "network": {"name": "unet", "args": args},
            "inference": {"overlap": 0.5, "sw_batch_size": 2, "precision": "float32"}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_card.json").write_text(json.dumps(card))
    save_weights(build_network("unet", args).state_dict(), folder / "model.safetensors")
    return folder


ENGINE = """
import json, resource, sys, time
from deepmed.inference.predictor import Predictor
from deepmed.io.image_io import write_image
model, image, out, profile = sys.argv[1:5]
predictor = Predictor(model, sys.argv[5])
start = time.perf_counter()
if profile == "1":
    import cProfile, pstats
    profiler = cProfile.Profile()
    result = profiler.runcall(predictor.predict, [image])
    pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(18)
else:
    result = predictor.predict([image])
write_image(result.output, out, label=True)
result = {"seconds": time.perf_counter() - start,
          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
if sys.argv[5].startswith("cuda"):
    import torch
    result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
print(json.dumps(result))
"""

PLAIN = """
import json, resource, sys, time
import torch
from monai import transforms as mt
from monai.inferers import sliding_window_inference
from monai.networks.nets import UNet
from safetensors.torch import load_file
model, image, out, device = sys.argv[1:5]
card = json.load(open(model + "/model_card.json"))
net = UNet(**card["network"]["args"]).to(device)
net.load_state_dict(load_file(model + "/model.safetensors"))
net.eval()
start = time.perf_counter()
pre = mt.Compose([mt.LoadImaged("image", ensure_channel_first=True), mt.Orientationd("image", axcodes="RAS"),
                  mt.Spacingd("image", pixdim=card["spacing"], mode="bilinear"),
                  mt.ScaleIntensityRanged("image", a_min=-1000, a_max=1000, b_min=-1, b_max=1, clip=True)])
item = pre({"image": image})
with torch.inference_mode():
    logits = sliding_window_inference(item["image"][None].to(device), card["patch_size"], 2, net, overlap=0.5,
                                      mode="gaussian", sw_device=device, device="cpu")
peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
item["pred"] = torch.softmax(logits[0], dim=0)
del logits
post = mt.Compose([mt.Invertd("pred", pre, orig_keys="image", nearest_interp=False),
                   mt.AsDiscreted("pred", argmax=True),
                   mt.SaveImaged("pred", output_dir=out, output_postfix="seg", separate_folder=False,
                                 output_dtype="uint8", print_log=False)])
post(item)
print(json.dumps({"seconds": time.perf_counter() - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  **({} if peak_gpu is None else {"peak_gpu_mib": peak_gpu})}))
"""


def run(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    if done.stderr.strip():
        print(done.stderr, file=sys.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=150)
    parser.add_argument("--classes", type=int, default=42)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--profile", action="store_true", help="print the engine's cProfile (cumulative)")
    parser.add_argument("--skip-plain", action="store_true", help="run the engine only")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    if args.device.startswith("cuda"):
        from bench_gpu_train import require_cuda

        require_cuda(args.device)  # one line and exit 2 without a GPU
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        image = make_large_ct(tmp / "ct.nii.gz", args.slices)
        model = make_model(tmp / "model", args.classes)
        engine = run(ENGINE, str(model), str(image), str(tmp / "engine_seg.nii.gz"), "1" if args.profile else "0",
                     args.device)
        plain = {} if args.skip_plain else run(PLAIN, str(model), str(image), str(tmp), args.device)
    results = {"input": f"512x512x{args.slices} CT", "classes": args.classes, "device": args.device,
               "engine": engine, "plain_monai": plain}
    print(f"{args.classes}-class UNet, patch {PATCH}, {SPACING} mm, input 512x512x{args.slices}, {args.device}")
    print(f"{'':20}{'engine':>12}{'plain MONAI':>14}{'ratio':>8}")
    for key, unit in (("seconds", "s/volume"), ("peak_rss_mb", "peak RSS MB"), ("peak_gpu_mib", "peak GPU MiB")):
        if key not in engine and key not in plain:
            continue
        e, p = engine.get(key), plain.get(key)
        ratio = f"{e / p:8.2f}" if e and p else ""
        print(f"{unit:20}{e if e is None else round(e, 1)!s:>12}{p if p is None else round(p, 1)!s:>14}{ratio}")
    for side, result in (("engine", engine), ("plain MONAI", plain)):
        if "error" in result:
            print(f"{side}: failed: {result['error']}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
