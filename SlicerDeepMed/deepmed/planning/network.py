"""Network arguments of the voxel-wise networks, derived from the patch and the spacing, and the patch sizes
each network can take.

Down-sampling follows nnU-Net's rule: at each level an axis is halved only while its spacing is within 2x of
the finest spacing among the axes still large enough, and its size stays >= ``MIN_FEATURE_SIZE`` voxels; a
lone axis is halved only while it has at least 3x that size. Convolutions are 1 voxel wide along an axis until
its spacing comes within 2x of the finest. The number of levels follows from the patch.

Sizes and spacings here are in configuration order (x, y, z); network arguments are in array order (z, y, x).
A patch from the configuration is kept when the network can take it and refused (one line, the nearest valid
sizes) when not; a planned ("auto") patch is moved to the nearest size the network takes, with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from deepmed.errors import DeepMedError

MIN_FEATURE_SIZE = 4  # nnU-Net: the smallest feature map edge after down-sampling
MIN_PATCH_VOXELS = 64  # below this the deepest feature maps of normalised networks hold one voxel
AXES = "xyz"


@dataclass(frozen=True)
class Pooling:
    """Per-level strides (one entry per down-sampling) and kernels (one more: the input level), in x, y, z."""

    strides: list[list[int]]
    kernels: list[list[int]]

    @property
    def total(self) -> list[int]:
        """How much each axis is down-sampled in all: the patch must be a multiple of it."""
        return [math.prod(level[i] for level in self.strides) for i in range(3)]


@dataclass
class NetworkPlan:
    """The network's full constructor arguments, the patch it trains on (x, y, z) and why."""

    args: dict
    patch_size: list[int]
    reasons: list[str] = field(default_factory=list)


def pooling_plan(patch: Sequence[int], spacing: Sequence[float], max_pools: int,
                 min_size: int = MIN_FEATURE_SIZE) -> Pooling:
    """nnU-Net's per-axis down-sampling for ``patch`` at ``spacing`` (at most ``max_pools`` levels)."""
    sizes, spacings = [float(n) for n in patch], [float(s) for s in spacing]
    kernels = [3 if s / min(spacings) < 2 else 1 for s in spacings]
    strides: list[list[int]] = []
    all_kernels = [list(kernels)]
    while len(strides) < max_pools:
        large = [i for i in range(3) if sizes[i] >= 2 * min_size]
        if not large:
            break
        finest = min(spacings[i] for i in large)
        axes = [i for i in large if spacings[i] / finest < 2]
        if len(axes) == 1 and sizes[axes[0]] < 3 * min_size:
            break
        stride = [2 if i in axes else 1 for i in range(3)]
        strides.append(stride)
        sizes = [math.ceil(n / st) for n, st in zip(sizes, stride)]
        spacings = [s * st for s, st in zip(spacings, stride)]
        kernels = [3 if k == 3 or s / min(spacings) < 2 else 1 for k, s in zip(kernels, spacings)]
        all_kernels.append(list(kernels))
    return Pooling(strides, all_kernels)


def _zyx(values):
    """x, y, z -> array order; a level that is the same on every axis becomes one number."""
    return [v[0] if len(set(v)) == 1 else list(reversed(v)) for v in values]


def _xyz_levels(strides) -> list[list[int]]:
    """User strides (array order, one number or one per axis per level) -> x, y, z per level."""
    if not isinstance(strides, (list, tuple)):
        raise DeepMedError(f"network.args.strides: expected a list (one entry per level), got {strides!r}")
    levels = []
    for level in strides:
        if isinstance(level, (int, float)):
            levels.append([int(level)] * 3)
        elif isinstance(level, (list, tuple)) and len(level) == 3:
            levels.append([int(v) for v in reversed(level)])
        else:
            raise DeepMedError(f"network.args.strides: expected one number or [z, y, x] per level, got {level!r}")
    return levels


def _padded(pooling: Pooling, levels: int) -> Pooling:
    """At least ``levels`` down-sampling levels: the missing ones keep the resolution (stride 1)."""
    missing = max(0, levels - len(pooling.strides))
    return Pooling(pooling.strides + [[1, 1, 1]] * missing, pooling.kernels + [pooling.kernels[-1]] * missing)


def _count(levels: Pooling | int) -> str:
    n = len(levels.strides) if isinstance(levels, Pooling) else levels
    return f"{n} down-sampling{'' if n == 1 else 's'}"


def _levels_text(pooling: Pooling) -> str:
    return " ".join("x".join(str(s) for s in level) for level in pooling.strides) or "none"


# ---- per network: its arguments for a patch, and the patches it takes -------------------------------------
def _unet(patch, spacing, user, reasons):
    if "strides" in user:
        levels = _xyz_levels(user["strides"])
        channels = [min(16 * 2 ** i, 256) for i in range(len(levels) + 1)]
        return {"channels": channels, "num_res_units": 2, "norm": "instance"}, Pooling(levels, [])
    levels = len(user["channels"]) - 1 if "channels" in user else 4
    pooling = pooling_plan(patch, spacing, levels)
    reasons.append(f"{_count(pooling)} (x, y, z strides per level: {_levels_text(pooling)}): "
                   "an axis is halved while its spacing is within 2x of the finest and it keeps >= 4 voxels")
    pooling = _padded(pooling, max(1, levels if "channels" in user else 1))
    channels = [min(16 * 2 ** i, 256) for i in range(len(pooling.strides) + 1)]
    return {"channels": channels, "strides": _zyx(pooling.strides), "num_res_units": 2, "norm": "instance"}, pooling


def _dynunet(patch, spacing, user, reasons):
    if "strides" in user:  # the levels after the input's
        levels = _xyz_levels(user["strides"])
        return {"kernel_size": [3] * (len(levels) + 1), "upsample_kernel_size": list(user["strides"]),
                "norm_name": "instance", "res_block": True}, Pooling(levels, [])
    pooling = _padded(pooling_plan(patch, spacing, 5), 2)
    reasons.append(f"{_count(pooling)} (x, y, z strides per level: {_levels_text(pooling)}), "
                   "1-wide kernels along coarse axes (nnU-Net's rule)")
    strides = [[1, 1, 1]] + pooling.strides
    return {"kernel_size": [list(reversed(k)) for k in pooling.kernels],
            "strides": [list(reversed(s)) for s in strides],
            "upsample_kernel_size": [list(reversed(s)) for s in pooling.strides],
            "norm_name": "instance", "res_block": True}, pooling


SEGRESNET_BLOCKS = [1, 2, 2, 4]


def _segresnet(patch, spacing, user, reasons):
    if "blocks_down" in user:
        pools = len(user["blocks_down"]) - 1
    else:
        pools = min(len(SEGRESNET_BLOCKS) - 1,
                    *(max(0, math.floor(math.log2(n / MIN_FEATURE_SIZE))) for n in patch))
        axis = AXES[min(range(3), key=lambda i: patch[i])]
        reasons.append(f"{_count(pools)}: SegResNet halves every axis together, and axis {axis} "
                       f"({min(patch)} voxels) keeps >= 4 voxels")
    args = {"init_filters": 16, "blocks_down": SEGRESNET_BLOCKS[:pools + 1], "blocks_up": [1] * pools}
    return args, Pooling([[2, 2, 2]] * pools, [])


def _fixed(multiple: int, name: str, extra: Callable[[list[int]], dict] = lambda patch: {}):
    """Networks with a fixed total down-sampling: every axis a multiple of ``multiple``."""
    def rule(patch, spacing, user, reasons):
        reasons.append(f"{name} down-samples every axis {multiple}x: patch axes are multiples of {multiple}")
        return extra(patch), Pooling([[multiple] * 3], [])
    return rule


def _highresnet(patch, spacing, user, reasons):
    reasons.append("HighResNet keeps the resolution (dilated convolutions): any patch")
    return {"dropout_prob": 0.0}, Pooling([], [])


RULES = {
    "unet": _unet,
    "dynunet": _dynunet,
    "segresnet": _segresnet,
    "basic_unet": _fixed(16, "BasicUNet", lambda patch: {"features": [16, 16, 32, 64, 128, 16]}),
    "unetr": _fixed(16, "UNETR", lambda patch: {"img_size": list(reversed(patch)), "feature_size": 16,
                                                "hidden_size": 384, "mlp_dim": 1536, "num_heads": 6}),
    "swin_unetr": _fixed(32, "SwinUNETR", lambda patch: {"feature_size": 24}),
    "highresnet": _highresnet,
}


def _problem(name: str, patch: list[int], pooling: Pooling) -> str | None:
    """Why ``name`` cannot take ``patch`` with ``pooling``, or None."""
    if math.prod(patch) < MIN_PATCH_VOXELS:
        return f"{math.prod(patch)} voxels; a patch needs at least {MIN_PATCH_VOXELS}"
    total = pooling.total
    bad = [i for i in range(3) if patch[i] % total[i] or patch[i] < total[i]]
    if bad:
        sizes = ", ".join(str(patch[i]) for i in bad)
        strides = ", ".join(sorted({str(total[i]) for i in bad}))
        return (f"ax{'is' if len(bad) == 1 else 'es'} {', '.join(AXES[i] for i in bad)} ({sizes}) must be "
                f"multiples of {strides}, the network's total stride")
    deepest = math.prod(n // t for n, t in zip(patch, total))
    if deepest < 2 and name != "highresnet":
        return f"its deepest feature map would hold one voxel (total stride {'x'.join(map(str, total))})"
    return None


def _candidates(patch: list[int], total: list[int]) -> list[list[int]]:
    """Patches near ``patch`` whose axes are multiples of ``total`` (below and above), nearest first."""
    down = [max(t, n // t * t) for n, t in zip(patch, total)]
    up = [max(t, -(-n // t) * t) for n, t in zip(patch, total)]
    options = [down, up, [d if d != n else u for d, u, n in zip(down, up, patch)]]
    bigger = [u for u in up]
    largest = max(range(3), key=lambda i: bigger[i])
    bigger[largest] += total[largest]  # for a deepest feature map of one voxel
    options += [bigger, [max(n, 64) for n in up]]
    voxels = math.prod(patch)
    return sorted({tuple(o): o for o in options}.values(),  # much bigger patches last: memory, time
                  key=lambda o: (math.prod(o) > 1.5 * voxels, sum(abs(math.log(a / b)) for a, b in zip(o, patch))))


def plan_dense_network(name: str, in_channels: int, out_channels: int, patch_size: Sequence[int],
                       spacing: Sequence[float], user_args: dict | None = None,
                       patch_from_config: bool = True) -> NetworkPlan:
    """Arguments of dense network ``name`` for ``patch_size`` at ``spacing`` (x, y, z); the user's args win.

    Raises DeepMedError naming the nearest valid patches when a configured patch does not fit the network;
    moves a planned patch to the nearest valid one instead (with the reason).
    """
    if name not in RULES:
        raise DeepMedError(f"network '{name}' does not map an image to an image of the same extent; "
                           f"voxel-wise tasks take: {', '.join(RULES)}")
    user = dict(user_args or {})
    patch = [int(n) for n in patch_size]
    reasons: list[str] = []
    args, pooling = _derive(name, patch, spacing, user, reasons)
    problem = _problem(name, patch, pooling)
    if problem:
        valid = [c for c in _candidates(patch, pooling.total) if _fits(name, c, spacing, user)]
        if patch_from_config or not valid:
            near = " or ".join(str(c) for c in valid[:2]) or "a larger patch"
            raise DeepMedError(f"data.patch_size {patch} does not fit network {name}: {problem}; "
                               f"nearest valid: {near}")
        reasons.append(f"patch {patch} moved to {valid[0]} ({problem})")
        patch, reasons = valid[0], [reasons[-1]]
        args, pooling = _derive(name, patch, spacing, user, reasons)
    full = {"spatial_dims": 3, "in_channels": in_channels, "out_channels": out_channels, **args, **user}
    return NetworkPlan(full, patch, reasons)


def _derive(name, patch, spacing, user, reasons):
    if user.get("strides") is not None and name in ("unet", "dynunet"):
        reasons.append("strides from the configuration")
    strides = user.get("strides")
    if name == "dynunet" and strides is not None:  # DynUNet's first stride is the input level's
        user = dict(user, strides=strides[1:])
    return RULES[name](patch, spacing, user, reasons)


def _fits(name, patch, spacing, user) -> bool:
    return _problem(name, patch, _derive(name, patch, spacing, user, [])[1]) is None
