"""The MONAI transforms an imported bundle may use, and how a step kept in a model card becomes MONAI's object.

A step is data: ``{"name": "Spacingd", "args": {...literal arguments...}}``. Only deterministic MONAI
transforms and inferers listed here are instantiated (by class name, from ``monai.transforms`` /
``monai.inferers``), so a bundle's preprocessing and postprocessing run as MONAI's own code with the bundle's
arguments (dtypes are kept as ``{"$dtype": "torch.float32"}`` and decoded here). ``merge_channels`` is the
one step that is deepmed's: the label merge a bundle writes as a
``Lambdad`` of nested ``torch.where`` (read from its source with ``ast``, never run), done with the same
operations.
"""

from __future__ import annotations

import ast

import torch

from deepmed.errors import DeepMedError
from deepmed.model.card_values import decode

#: The application that runs imported bundles (the importer writes it into the card).
APPLICATION = "monai_bundle"

#: preprocessing transforms instantiated from monai.transforms (LoadImaged is replaced by the engine's
#: in-memory equivalent; SaveImaged / ToDeviced do nothing here: the engine writes and places tensors)
PREPROCESSING = {"EnsureChannelFirstd", "Orientationd", "Spacingd", "ScaleIntensityRanged", "ScaleIntensityd",
                 "NormalizeIntensityd", "CropForegroundd", "EnsureTyped", "ToTensord", "CastToTyped",
                 "SpatialPadd", "DivisiblePadd", "CenterSpatialCropd", "Resized", "ThresholdIntensityd",
                 "ScaleIntensityRangePercentilesd", "ClipIntensityPercentilesd", "Identityd"}
POSTPROCESSING = {"Activationsd", "AsDiscreted", "KeepLargestConnectedComponentd", "Invertd", "EnsureTyped",
                  "ToTensord", "CastToTyped", "FillHolesd", "RemoveSmallObjectsd", "LabelFilterd",
                  "MapLabelValued", "Identityd"}
SKIPPED = {"SaveImaged", "ToDeviced", "CopyItemsd", "DeleteItemsd"}
INFERERS = {"SlidingWindowInferer", "SimpleInferer", "SlidingWindowInfererAdapt"}
#: inferer arguments that only place tensors on devices (the engine chooses the device)
DEVICE_ARGUMENTS = {"device", "sw_device", "progress"}
MERGE = "merge_channels"


def build_transform(step: dict, preprocessing=None):
    """A MONAI transform from a card step; ``Invertd`` inverts ``preprocessing`` (the built Compose)."""
    import monai.transforms

    name, args = step["name"], decode(dict(step.get("args", {})))
    if name == MERGE:
        return MergeChannels(**args)
    if name not in PREPROCESSING | POSTPROCESSING:
        raise DeepMedError(f"model card step {name!r} is not a transform deepmed runs")
    if name == "Invertd":
        args["transform"] = preprocessing
    return getattr(monai.transforms, name)(**args)


def build_inferer(step: dict):
    import monai.inferers

    if step["name"] not in INFERERS:
        raise DeepMedError(f"model card inferer {step['name']!r} is not one deepmed runs "
                           f"({', '.join(sorted(INFERERS))})")
    return getattr(monai.inferers, step["name"])(**decode(step.get("args", {})))


class MergeChannels:
    """``rules`` ``[[channel, op, threshold, value], ...]``: the first rule whose channel passes gives the
    voxel its value, else ``otherwise`` (exactly ``torch.where(x[[c]] > t, v, torch.where(...))``)."""

    OPS = {">": torch.gt, ">=": torch.ge, "==": torch.eq}

    def __init__(self, keys, rules: list, otherwise: int | float = 0):
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        self.rules, self.otherwise = rules, otherwise

    def __call__(self, data: dict) -> dict:
        data = dict(data)
        for key in self.keys:
            x = data[key]
            result = self.otherwise
            for channel, op, threshold, value in reversed(self.rules):
                result = torch.where(self.OPS[op](x[[channel]], threshold), value, result)
            data[key] = result
        return data


def parse_merge(source: str, where: str) -> dict:
    """``lambda x: torch.where(x[[2]] > 0, 4, torch.where(x[[0]] > 0, 1, 0))`` -> merge rules; a function of
    any other form is refused (deepmed runs no bundle code)."""
    refusal = DeepMedError(f"{where}: Lambdad func {source[:90]!r} is Python that deepmed does not run (only label "
                           "merges written as nested torch.where(x[[c]] > t, value, ...) are read)")
    try:
        tree = ast.parse(source.lstrip("$").strip(), mode="eval").body
    except SyntaxError:
        raise refusal from None
    if not isinstance(tree, ast.Lambda) or len(tree.args.args) != 1:
        raise refusal
    name = tree.args.args[0].arg
    ops = {ast.Gt: ">", ast.GtE: ">=", ast.Eq: "=="}
    rules, node = [], tree.body
    while isinstance(node, ast.Call):
        func = node.func
        if not (isinstance(func, ast.Attribute) and func.attr == "where" and isinstance(func.value, ast.Name)
                and func.value.id == "torch" and len(node.args) == 3 and not node.keywords):
            raise refusal
        condition, value, node = node.args
        try:
            (op,), (threshold,) = condition.ops, condition.comparators
            index = condition.left.slice
            channel = ast.literal_eval(index)
            ok = (isinstance(condition.left.value, ast.Name) and condition.left.value.id == name
                  and isinstance(channel, list) and len(channel) == 1 and isinstance(channel[0], int)
                  and type(op) in ops)
            rule = [channel[0], ops[type(op)], ast.literal_eval(threshold), ast.literal_eval(value)]
        except (AttributeError, ValueError, TypeError, KeyError):
            raise refusal from None
        if not ok or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in rule[2:]):
            raise refusal
        rules.append(rule)
    try:
        otherwise = ast.literal_eval(node)
    except ValueError:
        raise refusal from None
    if not rules or not isinstance(otherwise, (int, float)):
        raise refusal
    return {"rules": rules, "otherwise": otherwise}
