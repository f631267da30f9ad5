"""A plain MONAI segmentation script, written the way MONAI's spleen tutorial does it, for a wall-time budget.

    train: python plain_monai_segmentation.py train DATASET.json MODEL.pt --wall 189 [--device cpu]
    infer: python plain_monai_segmentation.py infer DATASET.json MODEL.pt OUT_FOLDER [--device cpu]

Tutorial pipeline: LoadImaged -> EnsureChannelFirstd -> ScaleIntensityRanged (abdomen window; for MR channels
NormalizeIntensityd per channel, as MONAI's BraTS tutorial; several channels are stacked by LoadImaged) ->
CropForegroundd -> Orientationd -> Spacingd, cached (CacheDataset), RandCropByPosNegLabeld patches; UNet
(16..256, residual units, batch norm), DiceCELoss, Adam, validation every 2 epochs on 20% of the cases with
sliding_window_inference, best model kept; inference with sliding_window_inference + Invertd. Adapted to a
CPU the way a user would: a patch that fits the cropped images and two patches per case. Training ends when
the process has run for --wall seconds (data loading included), as a user's whole script would.
"""

import time

STARTED = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402
from monai import transforms as mt  # noqa: E402
from monai.data import CacheDataset, DataLoader, decollate_batch  # noqa: E402
from monai.inferers import sliding_window_inference  # noqa: E402
from monai.losses import DiceCELoss  # noqa: E402
from monai.metrics import DiceMetric  # noqa: E402
from monai.networks.nets import UNet  # noqa: E402

PIXDIM = (1.5, 1.5, 2.0)    # the spleen tutorial's spacing
WINDOW = (-175.0, 250.0)    # abdomen window (MONAI's BTCV tutorial)
PATCH = (64, 64, 32)        # fits the cropped images (~60 x 50 x 40 voxels at PIXDIM)
KEYS = ["image", "label"]


def files(manifest: Path, part: str) -> tuple[list[dict], int, list[str]]:
    """The cases of ``part`` (each channel's file under "image": LoadImaged stacks them), the number of
    classes and the channel names."""
    data = json.loads(manifest.read_text())
    channels = [data["channel_names"][str(i)] for i in range(len(data["channel_names"]))]
    image = lambda c: [str(manifest.parent / p) for p in c["image"]] if len(channels) > 1 \
        else str(manifest.parent / c["image"][0])  # noqa: E731
    return [{"image": image(c), "label": str(manifest.parent / c["label"]), "id": c["id"]}
            for c in data[part]], len(data["labels"]), channels


def intensity(channels: list[str]):
    """CT: the abdomen window (spleen/BTCV tutorials); MR: z-score per channel over non-zero voxels (MONAI's
    BraTS tutorial)."""
    if all(name.upper() == "CT" for name in channels):
        return mt.ScaleIntensityRanged(["image"], a_min=WINDOW[0], a_max=WINDOW[1], b_min=0.0, b_max=1.0,
                                       clip=True)
    return mt.NormalizeIntensityd(["image"], nonzero=True, channel_wise=True)


def deterministic(keys, channels: list[str]) -> list:
    return [mt.LoadImaged(keys), mt.EnsureChannelFirstd(keys), intensity(channels),
            mt.CropForegroundd(keys, source_key="image", allow_smaller=True),
            mt.Orientationd(keys, axcodes="RAS"),
            mt.Spacingd(keys, pixdim=PIXDIM, mode=("bilinear", "nearest")[:len(keys)])]


def network(n_channels: int, n_classes: int) -> UNet:
    return UNet(spatial_dims=3, in_channels=n_channels, out_channels=n_classes, channels=(16, 32, 64, 128, 256),
                strides=(2, 2, 2, 2), num_res_units=2, norm="batch")


def train(args) -> None:
    torch.manual_seed(0)
    cases, n_classes, channels = files(args.dataset, "training")
    n_val = max(1, round(0.2 * len(cases)))
    train_files, val_files = cases[:-n_val], cases[-n_val:]
    train_tf = mt.Compose(deterministic(KEYS, channels) + [
        mt.RandCropByPosNegLabeld(KEYS, label_key="label", spatial_size=PATCH, pos=1, neg=1, num_samples=2,
                                  image_key="image", image_threshold=0, allow_smaller=True),
        mt.SpatialPadd(KEYS, spatial_size=PATCH)])
    # Several channels: cache from one thread. MONAI 1.6.1's LoadImaged, stacking a case's channel files from two
    # caching threads at once, now and then keeps one channel (1 case in 19 in 2 of 4 caches: a crash at collate).
    cache_threads = 2 if len(channels) == 1 else 1
    train_ds = CacheDataset(train_files, train_tf, cache_rate=1.0, num_workers=cache_threads, progress=False)
    train_loader = DataLoader(train_ds, batch_size=2, shuffle=True, num_workers=0)
    val_ds = CacheDataset(val_files, mt.Compose(deterministic(KEYS, channels)), cache_rate=1.0,
                          num_workers=cache_threads, progress=False)
    device = torch.device(args.device)
    model = network(len(channels), n_classes).to(device)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.Adam(model.parameters(), args.lr)
    dice_metric = DiceMetric(include_background=False, reduction="mean")
    post_pred = mt.AsDiscrete(argmax=True, to_onehot=n_classes)
    post_label = mt.AsDiscrete(to_onehot=n_classes)
    deadline = STARTED + args.wall - 2.0  # leave time to write the model and exit
    best, iterations, epoch, iteration_s, validation_s, validations = -1.0, 0, 0, 0.0, 0.0, 0
    stop = False

    def validate() -> float:
        model.eval()
        with torch.no_grad():
            for item in val_ds:
                image, label = item["image"][None].to(device), item["label"][None].to(device)
                out = sliding_window_inference(image, PATCH, 4, model)
                dice_metric(y_pred=[post_pred(o) for o in decollate_batch(out)],
                            y=[post_label(y) for y in decollate_batch(label)])
        value = float(dice_metric.aggregate().item())
        dice_metric.reset()
        model.train()
        return value

    def keep_if_best(started: float) -> None:
        nonlocal best, validation_s, validations
        value = validate()
        validation_s, validations = time.time() - started, validations + 1
        if value > best:
            best = value
            torch.save(model.state_dict(), args.model)

    model.train()
    while not stop:
        epoch += 1
        for batch in train_loader:
            if time.time() + iteration_s + validation_s >= deadline:
                stop = True
                break
            started = time.time()
            optimizer.zero_grad()
            loss = loss_function(model(batch["image"].to(device)), batch["label"].to(device))
            loss.backward()
            optimizer.step()
            iterations += 1
            iteration_s = time.time() - started if iterations > 1 else 0.0
        if not stop and epoch % 2 == 0 and time.time() + validation_s < deadline:
            keep_if_best(time.time())
    if time.time() + validation_s < deadline:
        keep_if_best(time.time())  # the last weights, validated when there is time
    elif best < 0:
        torch.save(model.state_dict(), args.model)
    print(json.dumps({"iterations": iterations, "epochs": epoch, "validations": validations,
                      "best_val_dice": best,
                      "seconds": round(time.time() - STARTED, 1)}))


def infer(args) -> None:
    cases, n_classes, channels = files(args.dataset, "test")
    device = torch.device(args.device)
    model = network(len(channels), n_classes).to(device)
    model.load_state_dict(torch.load(args.model, map_location=device, weights_only=True))
    model.eval()
    test_tf = mt.Compose(deterministic(["image"], channels))
    invert = mt.Invertd("pred", transform=test_tf, orig_keys="image", nearest_interp=False, to_tensor=True)
    post = mt.Compose([invert,
                       mt.AsDiscreted("pred", argmax=True)])
    args.out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        for case in cases:
            item = test_tf({"image": case["image"]})
            item["pred"] = sliding_window_inference(item["image"][None].to(device), PATCH, 4, model)[0].cpu()
            labels = post(item)["pred"][0].numpy().astype(np.uint8)  # (x, y, z) of the file's voxel grid
            reference = sitk.ReadImage(case["image"] if isinstance(case["image"], str) else case["image"][0])
            output = sitk.GetImageFromArray(np.ascontiguousarray(labels.transpose(2, 1, 0)))
            output.CopyInformation(reference)
            sitk.WriteImage(output, str(args.out / f"{case['id']}.nii.gz"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["train", "infer"])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("model", type=Path)
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--wall", type=float, default=189.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    train(args) if args.mode == "train" else infer(args)


if __name__ == "__main__":
    main()
