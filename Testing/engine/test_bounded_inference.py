"""Inference memory bounded whatever the number of classes: slabs on the working grid, one class at a time
on the input grid. Labels equal the plain path's (argmax of every class resampled and stacked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from test_training import trained_segmentation  # noqa: F401  (a fixture shared with test_training)

from deepmed.inference.predictor import Predictor
from deepmed.transforms.preprocessing import normalize_image, to_working_grid
from deepmed.volume_inference import sliding
from deepmed.volume_inference.ongrid import back_to_input, running_argmax


def plain_labels(predictor: Predictor, image: sitk.Image) -> np.ndarray:
    """The pre-streaming path: the whole activation in float32, every class resampled and stacked, argmax."""
    card = predictor.card
    array, _, grid = to_working_grid([sitk.Cast(image, sitk.sitkFloat32)], None, list(card.spacing))
    stats = [e.statistics for e in card.inputs]
    tensor = torch.from_numpy(normalize_image(array, [e.normalization for e in card.inputs], stats))[None]
    activation = sliding.predict_volume(predictor.networks["model"], tensor, list(reversed(card.patch_size)),
                                        activation=predictor.app.activation, precision="float32")[0].numpy()
    stacked = np.stack([back_to_input(a, grid, image) for a in activation])
    values = np.asarray(sorted(label.value for label in card.labels))
    return values[np.argmax(stacked, axis=0)]


def test_running_argmax_is_argmax_with_first_wins_ties():
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 4, size=(5, 6, 7, 8)).astype(np.float32)  # many exact ties
    index, best = running_argmax(iter(stack))
    np.testing.assert_array_equal(index, np.argmax(stack, axis=0))
    np.testing.assert_array_equal(best, stack.max(axis=0))


def test_streaming_labels_equal_the_plain_path(trained_segmentation, monkeypatch):  # noqa: F811
    manifest, model_dir, _ = trained_segmentation
    one = sitk.ReadImage(str(manifest.parent / "c2.nii.gz"))
    tall = sitk.GetImageFromArray(np.concatenate([sitk.GetArrayFromImage(one)] * 4))  # 72 slices: room for slabs
    tall.SetSpacing(one.GetSpacing())
    tall.SetOrigin(one.GetOrigin())
    tall.SetDirection(one.GetDirection())
    predictor = Predictor(model_dir, "cpu")
    for image in (one, tall):
        reference = plain_labels(predictor, image)
        streamed = sitk.GetArrayFromImage(predictor.predict(image, precision="float32").output)
        np.testing.assert_array_equal(streamed, reference)  # one slab, float32: the same computation
    # forced into slabs (two patches deep, the least) and float16 storage: labels agree on > 99.9% of voxels
    monkeypatch.setattr(sliding, "SLAB_BUDGET_BYTES", 1)
    monkeypatch.setattr(sliding, "FLOAT32_ACTIVATION_BYTES", 0)
    calls = []
    original = sliding.predict_volume
    monkeypatch.setattr(sliding, "predict_volume", lambda *a, **k: calls.append(a[1].shape[2]) or original(*a, **k))
    slabbed = sitk.GetArrayFromImage(predictor.predict(tall, precision="float32").output)
    assert len(calls) > 1 and max(calls) < tall.GetSize()[2]  # it did run in slabs
    assert np.mean(slabbed == reference) > 0.999


MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys, tempfile
    from pathlib import Path
    import numpy as np, SimpleITK as sitk, torch
    from deepmed.model.weights import save_weights
    from deepmed.networks import build_network
    from deepmed.inference.predictor import Predictor
    classes, mode = int(sys.argv[1]), sys.argv[2]
    torch.manual_seed(0)
    args = {"spatial_dims": 3, "in_channels": 1, "out_channels": classes, "channels": [4, 8], "strides": [2],
            "num_res_units": 0}
    card = {"format": "deepmed-model/1", "application": "segmentation", "patch_size": [32, 32, 32],
            "inputs": [{"name": "MR", "normalization": "zscore", "statistics": None}],
            "labels": [{"value": v, "name": f"l{v}"} for v in range(classes)], "spacing": [2.0, 2.0, 2.0],
            "network": {"name": "unet", "args": args}, "inference": {"overlap": 0.25}}
    folder = Path(tempfile.mkdtemp())
    (folder / "model_card.json").write_text(json.dumps(card))
    save_weights(build_network("unet", args).state_dict(), folder / "model.safetensors")
    image = sitk.GetImageFromArray(np.random.default_rng(0).normal(size=(96, 256, 256)).astype(np.float32))
    predictor = Predictor(folder, "cpu")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if mode == "plain":
        from test_bounded_inference import plain_labels
        plain_labels(predictor, image)
    else:
        predictor.predict(image, precision="float32")
    print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "before_mb": before / 1024}))
""")


def _peak_mb(classes: int, mode: str) -> float:
    here = Path(__file__).parent
    env_path = os.pathsep.join(str(p) for p in (here, here.parent, here.parents[1] / "SlicerDeepMed"))
    run = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(classes), mode], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": env_path, "OMP_NUM_THREADS": "2"})
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])["peak_mb"]


@pytest.mark.slow
def test_peak_memory_grows_by_less_than_half_a_volume_per_class():
    """A 96x256x256 input (24 MiB per float32 volume); 4 vs 24 classes. The plain path grows by more than a
    volume per class (the measure can fail); the streaming path by less than half of one."""
    volume_mb = 96 * 256 * 256 * 4 / 2**20
    streaming = (_peak_mb(24, "streaming") - _peak_mb(4, "streaming")) / 20
    plain = (_peak_mb(24, "plain") - _peak_mb(4, "plain")) / 20
    assert plain > volume_mb, (plain, volume_mb)
    assert streaming < 0.5 * volume_mb, (streaming, volume_mb)


def test_regression_decodes_while_the_channel_view_is_valid():
    """The streamed channels are views into a resampled image that is freed when the generator closes."""
    from deepmed.applications import get_application

    def channels():
        buffer = np.full((2, 3, 4), 5.0, np.float32)
        try:
            yield buffer
        finally:
            buffer[:] = np.nan  # what freeing the resampled image does to a view of it

    out = get_application("regression").decode_on_input(channels, {"target_mean": 1.0, "target_std": 2.0}, {})
    assert np.all(out == 11.0)
