"""Property-based checks of the planner's per-axis down-sampling (nnU-Net's rule) over the space of spacings
and patch shapes: no axis is pooled below a size that breaks the network, an axis much coarser than the
finest is pooled only once the others have caught up, kernels are 1 voxel wide along such an axis, and the
planned U-Net runs on the planned patch."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepmed.networks import build_network
from deepmed.planning import dense as rules
from deepmed.planning.network import MIN_FEATURE_SIZE, plan_dense_network, pooling_plan

spacings = st.one_of(
    st.lists(st.floats(0.3, 3.0), min_size=3, max_size=3),
    st.tuples(st.floats(0.3, 1.2), st.floats(0.3, 1.2), st.floats(2.0, 8.0)).map(list),  # thick slices
    st.permutations([0.7, 0.7, 3.2]).map(list),  # the coarse axis anywhere
)
patches = st.lists(st.integers(4, 256), min_size=3, max_size=3)
QUICK = settings(max_examples=300, deadline=None, derandomize=True, database=None)


def levels(patch, spacing, pooling):
    """(sizes, spacings) before each down-sampling level."""
    sizes, current = [float(n) for n in patch], [float(s) for s in spacing]
    for stride in pooling.strides:
        yield sizes, current, stride
        sizes = [math.ceil(n / s) for n, s in zip(sizes, stride)]
        current = [c * s for c, s in zip(current, stride)]


@QUICK
@given(patch=patches, spacing=spacings, max_pools=st.integers(1, 6))
def test_no_axis_is_pooled_below_the_smallest_feature_map(patch, spacing, max_pools):
    pooling = pooling_plan(patch, spacing, max_pools)
    assert len(pooling.strides) <= max_pools and len(pooling.kernels) == len(pooling.strides) + 1
    for sizes, _, stride in levels(patch, spacing, pooling):
        assert all(s in (1, 2) for s in stride) and 2 in stride  # every level halves something
        for axis in range(3):
            if stride[axis] == 2:
                assert sizes[axis] >= 2 * MIN_FEATURE_SIZE  # keeps >= 4 voxels after halving


@QUICK
@given(patch=patches, spacing=spacings)
def test_an_axis_much_coarser_than_the_finest_is_pooled_only_once_the_others_catch_up(patch, spacing):
    pooling = pooling_plan(patch, spacing, 5)
    for sizes, current, stride in levels(patch, spacing, pooling):
        large = [i for i in range(3) if sizes[i] >= 2 * MIN_FEATURE_SIZE]
        finest = min(current[i] for i in large)
        for axis in range(3):
            if stride[axis] == 2:
                assert current[axis] < 2 * finest  # pooled: within 2x of the finest axis still poolable
            elif axis in large:
                assert current[axis] >= 2 * finest  # left out only for being too coarse
        for finer in large:  # a finer axis is never left behind while a coarser one is pooled
            for coarser in range(3):
                if current[finer] < current[coarser] and stride[coarser] == 2:
                    assert stride[finer] == 2


@QUICK
@given(patch=patches, spacing=spacings)
def test_kernels_are_one_voxel_wide_along_an_axis_until_its_spacing_comes_within_2x(patch, spacing):
    pooling = pooling_plan(patch, spacing, 5)
    current = [float(s) for s in spacing]
    for level, kernel in enumerate(pooling.kernels):
        for axis in range(3):
            if current[axis] / min(current) < 2:
                assert kernel[axis] == 3
            elif all(k[axis] == 1 for k in pooling.kernels[:level]):  # not yet wide at a finer level
                assert kernel[axis] == 1
        if level < len(pooling.strides):
            current = [c * s for c, s in zip(current, pooling.strides[level])]


def fingerprint(spacing, size):
    return {"spacing": {"median": spacing, "p10": spacing}, "size": {"median": size}}


@settings(max_examples=12, deadline=None, derandomize=True, database=None)
@given(spacing=spacings, size=st.lists(st.integers(16, 512), min_size=3, max_size=3))
def test_the_planned_unet_runs_on_the_planned_patch(spacing, size):
    """The planner's whole chain on a drawn dataset: target spacing, patch within the CPU budget, strides."""
    target, _ = rules.target_spacing(fingerprint(spacing, size))
    patch, _ = rules.patch_size(fingerprint(spacing, size), target, 16 * 16 * 16 * 2)  # small: quick
    plan = plan_dense_network("unet", 1, 3, patch, target, patch_from_config=False)
    zyx = list(reversed(plan.patch_size))
    total = pooling_plan(plan.patch_size, target, len(plan.args["channels"]) - 1).total
    assert all(n % t == 0 for n, t in zip(plan.patch_size, total))
    torch.manual_seed(0)
    model = build_network("unet", plan.args).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 1, *zyx)).shape == (1, 3, *zyx)
