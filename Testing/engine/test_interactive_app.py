"""The interactive application: trains with simulated clicks, clicks help, refine on the input's exact grid
(oblique), region around the clicks, --init from a segmentation model, the CLI's one-line errors, and the
session that keeps the model and the image loaded."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import OBLIQUE

from deepmed.cli.main import main
from deepmed.errors import DeepMedError
from deepmed.interactive.clicks import Click, ClickSet, write_clicks
from deepmed.interactive.session import InteractiveSession
from deepmed.interactive.simulate import next_click
from deepmed.model.directory import read_card
from deepmed.training.driver import train

TINY = ["data.patch_size=[16,16,16]", "network.args.channels=[8,16,32]", "network.args.strides=[2,2]",
        "training.device=cpu", "optimizer.lr=0.01", "data.spacing=[1,1,1]", "training.seed=3"]
INTERACTIVE = TINY + ["app=interactive", "task.region_size=[16,16,16]", "task.auto_fraction=0.1",
                      "task.max_rounds=1", "task.sigma_mm=4", "task.validation_clicks=1"]


def two_balls(seed: int, shape=(20, 20, 20)) -> tuple[np.ndarray, np.ndarray]:
    """Two equally bright balls in noise; only one (chosen at random) is the label 'ball': without a click
    a model cannot know which, with one it can."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices(shape)
    image = rng.normal(0, 0.3, shape)
    label = np.zeros(shape, np.uint8)
    centres = [(10, 6, 6), (10, 13, 13)] if seed % 2 else [(6, 6, 13), (13, 13, 6)]
    wanted = int(rng.integers(0, 2))
    for index, (z, y, x) in enumerate(centres):
        ball = (zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 <= 3.5 ** 2
        image[ball] += 2.0
        if index == wanted:
            label[ball] = 1
    return image.astype(np.float32), label


def write_cases(folder, seeds, val=1):
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for seed in seeds:
        image, label = two_balls(seed)
        sitk.WriteImage(sitk.GetImageFromArray(image), str(folder / f"b{seed}.nii.gz"))
        sitk.WriteImage(sitk.GetImageFromArray(label), str(folder / f"b{seed}_seg.nii.gz"))
        entries.append({"id": f"b{seed}", "image": [f"b{seed}.nii.gz"], "label": f"b{seed}_seg.nii.gz"})
    ids = [e["id"] for e in entries]
    manifest = {"name": folder.name, "channel_names": {"0": "MR"}, "labels": {"background": 0, "ball": 1},
                "training": entries, "splits": [{"train": ids[:-val], "val": ids[-val:]}]}
    (folder / "dataset.json").write_text(json.dumps(manifest))
    return folder / "dataset.json"


@pytest.fixture(scope="module")
def balls_model(tmp_path_factory):
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("interactive")
    manifest = write_cases(root / "data", range(8))
    model = train(manifest, root / "model", progress="none",
                  overrides=INTERACTIVE + ["training.epochs=3", "training.iterations_per_epoch=12",
                                           "training.val_every=3"])
    return model


def _dice(a, b):
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def _clicks_dice(session, image, truth, clicks_count):
    """Dice of 'ball' after ``clicks_count`` clicks of the standard protocol (session, input grid)."""
    result = session.refine(image, ClickSet(), label="ball")
    clicks = []
    for _ in range(clicks_count):
        predicted = sitk.GetArrayFromImage(result.labels) == 1
        click = next_click(predicted, truth, image.GetSpacing()[::-1])
        if click is None:
            break
        point = image.TransformIndexToPhysicalPoint([int(v) for v in click.index_zyx[::-1]])
        clicks.append(Click(point, click.positive, "ball"))
        result = session.refine(image, ClickSet(tuple(clicks)), previous=result.labels)
    return _dice(sitk.GetArrayFromImage(result.labels) == 1, truth)


@pytest.mark.slow
def test_card_declares_refine_and_clicks_help(balls_model):
    card = read_card(balls_model)
    assert [(m.name, m.inputs) for m in card.available_modes] == [("refine", "clicks"), ("predict", "images")]
    assert card.network.args["in_channels"] == 1 + 3 and card.network.args["out_channels"] == 2  # + clicks, mask
    assert card.channel_names == ["MR"]
    session = InteractiveSession(balls_model)
    assert session.labels == ("ball",)
    gains = []
    for seed in (100, 101, 102):
        array, label = two_balls(seed)
        image = sitk.GetImageFromArray(array)
        truth = label == 1
        gains.append(_clicks_dice(session, image, truth, 3) - _clicks_dice(session, image, truth, 0))
    # the automatic mask cannot know which ball; the clicks tell it (a tiny training: a clear, not a large gain)
    assert min(gains) > 0.05 and np.mean(gains) > 0.15, gains    # seen: 0.30, 0.43, 0.33


@pytest.mark.slow
def test_refine_on_oblique_grid_keeps_previous_outside_the_region(balls_model):
    """Output on the input's exact grid (oblique direction, odd origin and spacing); a click in a corner of a
    large image computes a region around it and leaves the previous mask elsewhere untouched."""
    array = np.random.default_rng(5).normal(0, 0.3, (40, 44, 48)).astype(np.float32)
    zz, yy, xx = np.indices(array.shape)
    array[(zz - 8) ** 2 + (yy - 8) ** 2 + (xx - 8) ** 2 <= 12] += 2.0
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.9, 1.1, 1.2))
    image.SetOrigin((-30.5, 12.25, 7.0))
    image.SetDirection(OBLIQUE)
    previous_array = np.zeros(array.shape, np.uint8)
    previous_array[30:35, 35:40, 40:45] = 1          # far from the click: must stay
    previous = sitk.GetImageFromArray(previous_array)
    previous.CopyInformation(image)
    session = InteractiveSession(balls_model)
    point = image.TransformIndexToPhysicalPoint((8, 8, 8))
    result = session.refine(image, ClickSet((Click(point, True, "ball"),)), previous=previous)
    out = result.labels
    assert out.GetSize() == image.GetSize() and out.GetSpacing() == image.GetSpacing()
    assert out.GetOrigin() == image.GetOrigin() and out.GetDirection() == image.GetDirection()
    labels = sitk.GetArrayFromImage(out)
    assert labels.dtype == np.uint8 and (labels[30:35, 35:40, 40:45] == 1).all()
    (start, size) = result.region
    assert all(s < n for s, n in zip(size, image.GetSize()))          # a region, not the whole image
    assert start[0] <= 8 < start[0] + size[0]
    assert labels[8, 8, 8] == 1                                      # the clicked ball is segmented
    # RAS clicks are the same points with x and y negated
    ras = ClickSet((Click((-point[0], -point[1], point[2]), True, "ball"),), "RAS")
    again = session.refine(image, ras, previous=previous)
    assert (sitk.GetArrayFromImage(again.labels) == labels).all()
    assert session.images_prepared == 1                              # the image was put on the grid once


@pytest.mark.slow
def test_session_loads_the_model_once(balls_model, monkeypatch):
    import deepmed.inference.predictor as predictor

    loads = []
    original = predictor.load_weights
    monkeypatch.setattr(predictor, "load_weights", lambda path: loads.append(path) or original(path))
    session = InteractiveSession(balls_model)
    array, _ = two_balls(7)
    image = sitk.GetImageFromArray(array)
    for index in ((6, 6, 6), (13, 13, 13), (6, 13, 6)):
        point = image.TransformIndexToPhysicalPoint(index)
        session.refine(image, ClickSet((Click(point, True, "ball"),)))
    assert len(loads) == 1 and session.images_prepared == 1


@pytest.mark.slow
def test_infer_clicks_cli_and_its_errors(balls_model, tmp_path, capsys):
    array, _ = two_balls(9)
    image = sitk.GetImageFromArray(array)
    image.SetOrigin((5.0, -3.0, 2.0))
    path = tmp_path / "image.nii.gz"
    sitk.WriteImage(image, str(path))
    clicks = tmp_path / "clicks.json"
    write_clicks(ClickSet((Click(image.TransformIndexToPhysicalPoint((6, 6, 6)), True, "ball"),)), clicks)
    out = tmp_path / "mask.nii.gz"
    assert main(["infer", "--model", str(balls_model), str(path), "--clicks", str(clicks), "-o", str(out),
                 "--progress", "none"]) == 0
    written = sitk.ReadImage(str(out))
    assert written.GetSize() == image.GetSize() and written.GetOrigin() == image.GetOrigin()
    assert main(["infer", "--model", str(balls_model), str(path), "--clicks", str(clicks), "--previous", str(out),
                 "-o", str(tmp_path / "again.nii.gz"), "--progress", "none"]) == 0
    bad = {"label": {"coordinates": "LPS", "clicks": [{"point": [10, 10, 10], "label": "liver", "positive": True}]},
           "outside": {"coordinates": "LPS", "clicks": [{"point": [900, 0, 0], "label": "ball", "positive": True}]},
           "coordinates": {"coordinates": "IJK", "clicks": []}}
    for key, document in bad.items():
        (tmp_path / f"{key}.json").write_text(json.dumps(document))
        capsys.readouterr()
        code = main(["infer", "--model", str(balls_model), str(path), "--clicks", str(tmp_path / f"{key}.json"),
                     "-o", str(tmp_path / f"{key}.nii.gz"), "--progress", "none"])
        err = capsys.readouterr().err
        assert code != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert {"label": "liver", "outside": "outside the image", "coordinates": "coordinates"}[key] in err
    assert main(["infer", "--model", str(balls_model), str(path), "--clicks", str(clicks), "--label", "liver",
                 "-o", str(tmp_path / "l.nii.gz"), "--progress", "none"]) != 0


@pytest.mark.slow
def test_init_from_a_segmentation_model_widens_the_first_layers(tmp_path):
    """``--init`` from a segmentation model of the same network: the guidance channels' weights start at zero,
    the image channels' are the segmentation model's, every other weight too (the head included: the same
    classes), so without clicks it starts as the segmentation model."""
    from safetensors.torch import load_file

    torch.set_num_threads(2)
    manifest = write_cases(tmp_path / "data", range(3))
    one_step = ["training.epochs=1", "training.iterations_per_epoch=1", "training.val_every=1"]
    segmenter = train(manifest, tmp_path / "seg", progress="none", overrides=TINY + one_step)
    interactive = train(manifest, tmp_path / "int", progress="none",
                        overrides=INTERACTIVE + one_step + [f"training.init={segmenter}", "optimizer.lr=1e-9",
                                                            "training.init_lr_factor=1e-9"])
    with pytest.raises(DeepMedError, match="refine"):
        InteractiveSession(segmenter)                    # not an interactive model
    card = read_card(interactive)
    assert card.training["initialized_from"]["application"] == "segmentation"
    theirs, ours = load_file(str(segmenter / "model.safetensors")), load_file(str(interactive / "model.safetensors"))
    stem = [k for k in ours if ours[k].dim() == 5 and ours[k].shape[1] == 4]  # the image + 3 guidance channels
    assert stem
    for key in stem:
        assert torch.allclose(ours[key][:, :1], theirs[key], atol=1e-6)
        assert torch.allclose(ours[key][:, 1:], torch.zeros_like(ours[key][:, 1:]), atol=1e-6)
    rest = [k for k in theirs if k not in stem]
    assert any(theirs[k].dim() == 5 and theirs[k].shape[0] == 2 for k in rest)  # the output head: 2 classes
    for key in rest:
        assert torch.allclose(ours[key], theirs[key], atol=1e-6), key


@pytest.mark.parametrize("setting, key", [("task.auto_fraction=1.5", "auto_fraction"),
                                          ("task.max_rounds=-1", "max_rounds"),
                                          ("task.region_size=[16,16]", "region_size")])
def test_bad_task_settings_are_one_line(tmp_path, capsys, setting, key):
    manifest = write_cases(tmp_path / "data", range(3))
    code = main(["plan", str(manifest), "--app", "interactive", "--device", "cpu", "--set", setting])
    err = capsys.readouterr().err
    assert code != 0 and f"task.{key}" in err and "Traceback" not in err
