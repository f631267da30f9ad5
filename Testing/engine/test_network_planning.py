"""Network arguments from patch and spacing: nnU-Net's pooling rule, the patches each network takes, and a
property-based check that every planned voxel-wise network trains one step on any drawn set-up."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from deepmed.applications import get_application
from deepmed.errors import DeepMedError
from deepmed.networks import build_network, network_arguments
from deepmed.planning.network import RULES, plan_dense_network, pooling_plan
from deepmed.planning.planner import make_plan
from deepmed.training.config import resolve_config

DENSE_NETWORKS = sorted(RULES)
BRAIN = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "pyradiomics"


def test_anisotropic_axes_are_pooled_only_once_the_others_catch_up():
    pooling = pooling_plan([32, 32, 8], [0.78, 0.78, 6.5], max_pools=5)
    assert pooling.strides == [[2, 2, 1]] * 3  # z (6.5 mm) never within 2x of x, y; x, y stop at 4 voxels
    assert pooling.kernels[0] == [3, 3, 1]
    deep = pooling_plan([160, 160, 40], [0.5, 0.5, 2.0], max_pools=5)
    assert deep.strides[:2] == [[2, 2, 1]] * 2 and deep.strides[2] == [2, 2, 2]  # z joins at 2.0 vs 2.0 mm
    assert deep.kernels[0] == [3, 3, 1] and deep.kernels[2] == [3, 3, 3]
    assert pooling_plan([64, 64, 64], [1.0, 1.0, 1.0], max_pools=4).strides == [[2, 2, 2]] * 4


def test_unet_gets_per_axis_strides_and_its_depth_from_the_patch():
    args = plan_dense_network("unet", 1, 2, [32, 32, 8], [0.78, 0.78, 6.5]).args
    assert args["strides"] == [[1, 2, 2]] * 3 and len(args["channels"]) == 4  # array order (z, y, x)
    assert plan_dense_network("unet", 1, 2, [64, 64, 64], [1, 1, 1]).args["strides"] == [2, 2, 2, 2]
    assert plan_dense_network("segresnet", 1, 2, [32, 32, 8], [1, 1, 1]).args["blocks_down"] == [1, 2]
    # the registry's entry point (array order) agrees
    assert network_arguments("unet", 1, 2, [8, 32, 32], [6.5, 0.78, 0.78])["strides"] == [[1, 2, 2]] * 3


@pytest.mark.parametrize("name, patch", [("unet", [33, 32, 8]), ("dynunet", [32, 30, 8]),
                                         ("basic_unet", [32, 32, 8]), ("unetr", [40, 32, 16]),
                                         ("swin_unetr", [32, 32, 32])])
def test_a_configured_patch_a_network_cannot_take_is_refused_with_the_nearest_valid_ones(name, patch):
    with pytest.raises(DeepMedError) as error:
        plan_dense_network(name, 1, 2, patch, [1.0, 1.0, 1.0])
    text = str(error.value)
    assert "\n" not in text and "data.patch_size" in text and name in text
    suggested = [json.loads(s) for s in re.findall(r"\[[0-9, ]+\]", text.split("nearest valid:")[1])]
    assert suggested
    for valid in suggested:  # every suggestion is taken as it is
        assert plan_dense_network(name, 1, 2, valid, [1.0, 1.0, 1.0]).patch_size == valid


def test_a_planned_patch_moves_to_the_nearest_size_the_network_takes_with_the_reason():
    result = plan_dense_network("swin_unetr", 1, 2, [64, 64, 48], [1, 1, 1], patch_from_config=False)
    assert result.patch_size in ([64, 64, 32], [64, 64, 64]) and "moved" in result.reasons[0]
    kept = plan_dense_network("unet", 1, 2, [48, 48, 32], [1, 1, 1], patch_from_config=False)
    assert kept.patch_size == [48, 48, 32] and not any("moved" in r for r in kept.reasons)


def test_user_strides_are_respected_when_the_patch_fits_them_and_refused_when_not():
    args = plan_dense_network("unet", 1, 2, [48, 48, 32], [1, 1, 1], {"strides": [2, 2, 2]}).args
    assert args["strides"] == [2, 2, 2] and len(args["channels"]) == 4
    with pytest.raises(DeepMedError, match=r"axis z \(12\)"):
        plan_dense_network("unet", 1, 2, [48, 48, 12], [1, 1, 1], {"strides": [2, 2, 2]})
    dyn = plan_dense_network("dynunet", 1, 2, [32, 32, 16], [1, 1, 1], {"strides": [1, [1, 2, 2], 2]}).args
    network = build_network("dynunet", dyn)
    assert network(torch.zeros(1, 1, 16, 32, 32)).shape == (1, 2, 16, 32, 32)
    with pytest.raises(DeepMedError, match=r"axis x \(34\)"):
        plan_dense_network("dynunet", 1, 2, [34, 32, 16], [1, 1, 1], {"strides": [1, [1, 2, 2], 2]})
    with pytest.raises(DeepMedError, match="network.args.strides"):
        plan_dense_network("dynunet", 1, 2, [32, 32, 32], [1, 1, 1], {"strides": [[1, 1, 1], "x"]})


def test_a_network_with_one_output_per_case_is_refused_for_voxel_wise_tasks():
    with pytest.raises(DeepMedError, match="densenet"):
        plan_dense_network("densenet", 1, 2, [32, 32, 32], [1, 1, 1])


def _fingerprint(spacing, size, labels):
    return {"name": "drawn", "cases": 3, "channel_names": [f"c{i}" for i in range(3)][:1], "labels": labels,
            "spacing": {"median": spacing, "p10": spacing}, "size": {"median": size}}


spacings = st.one_of(
    st.tuples(*[st.floats(0.3, 3.0)] * 3),
    st.tuples(st.floats(0.3, 1.0), st.floats(0.3, 1.0), st.floats(3.0, 10.0)),  # thick slices
    st.permutations([0.5, 0.5, 6.0]).map(tuple),  # thick along any axis
)
patches = st.one_of(st.just("auto"), st.lists(st.integers(1, 72), min_size=3, max_size=3),
                    st.lists(st.sampled_from([8, 16, 24, 32, 48, 64]), min_size=3, max_size=3),
                    ).filter(lambda p: p == "auto" or math.prod(p) <= 64 * 64 * 16)  # one step stays quick


@pytest.mark.slow  # ~25 s for the seven networks on a busy 2-core machine; still in `make test`
@pytest.mark.parametrize("network", DENSE_NETWORKS)
@settings(max_examples=10, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(app=st.sampled_from(["segmentation", "regression"]),
       spacing=spacings, size=st.tuples(*[st.integers(8, 400)] * 3), patch=patches,
       channels=st.integers(1, 3), classes=st.integers(1, 4))
def test_every_planned_voxel_wise_network_trains_a_step_or_is_refused_in_one_line(network, app, spacing, size,
                                                                                 patch, channels, classes):
    torch.manual_seed(0)
    labels = {"background": 0, **{f"l{i}": i for i in range(1, classes + 1)}} if app == "segmentation" else {}
    fingerprint = _fingerprint(list(spacing), list(size), labels)
    fingerprint["channel_names"] = [f"c{i}" for i in range(channels)]
    config = resolve_config({"app": app, "network": {"name": network}},
                            [f"data.patch_size={json.dumps(patch)}" if patch != "auto" else "data.patch_size=auto",
                             "data.max_patch_voxels=8192"])
    try:
        result = make_plan(get_application(app), fingerprint, config, "cpu")
    except DeepMedError as error:  # the one-line refusal, only for a configured patch
        assert patch != "auto" and "\n" not in str(error) and "data.patch_size" in str(error)
        event(f"refused {network}")
        return
    event(f"trained {network}")
    if patch != "auto":
        assert result["patch_size"] == patch  # a configured patch is kept when valid
    zyx = list(reversed(result["patch_size"]))
    model = build_network(result.network.name, result.network.plain_args())
    output = model(torch.randn(2, channels, *zyx))
    output = output[0] if isinstance(output, (list, tuple)) else output
    assert output.shape == (2, result.network.args["out_channels"], *zyx)
    output.float().mean().backward()
    assert result.reasons["network"]


@pytest.mark.slow
@pytest.mark.skipif(not (BRAIN / "brain1_image.nrrd").is_file(), reason="needs ../shared/data/pyradiomics")
def test_a_thin_patch_on_thick_slices_trains(tmp_path):
    """The shared brain MR (0.78 x 0.78 x 6.5 mm) with an 8-slice patch: z is never pooled."""
    from deepmed.training.driver import train

    entries = []
    for case in ("brain1", "brain2"):
        for kind in ("image", "label"):
            shutil.copy(BRAIN / f"{case}_{kind}.nrrd", tmp_path / f"{case}_{kind}.nrrd")
        entries.append({"id": case, "image": f"{case}_image.nrrd", "label": f"{case}_label.nrrd"})
    manifest = tmp_path / "dataset.json"
    manifest.write_text(json.dumps({"name": "brain", "channel_names": {"0": "MR"}, "training": entries,
                                    "labels": {"background": 0, "lesion": 1}}))
    model_dir = train(manifest, tmp_path / "model", overrides=[
        "data.patch_size=[32,32,8]", "training.epochs=1", "training.iterations_per_epoch=2",
        "training.val_every=1", "training.device=cpu"])
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["patch_size"] == [32, 32, 8]
    assert card["network"]["args"]["strides"] == [[1, 2, 2]] * 3
    assert card["training"]["epochs_completed"] == 1
