"""The network of an nnU-Net configuration, rebuilt from its plans with ``dynamic_network_architectures``.

The plans name the class (``architecture.network_class_name``) and its arguments (``arch_kwargs``); some
arguments name torch classes (``conv_op``, ``norm_op``, ...). Names are resolved only inside
``dynamic_network_architectures.architectures`` and ``torch.nn``, never by importing whatever a file says.
"""

from __future__ import annotations

import importlib

from deepmed.errors import DeepMedError

INSTALL_HINT = "pip install 'deepmed[nnunet]' (or: pip install dynamic-network-architectures)"
NETWORK_PACKAGE = "dynamic_network_architectures.architectures."
TORCH_PACKAGE = "torch.nn."


def _architectures():
    try:
        return importlib.import_module("dynamic_network_architectures.architectures")
    except ImportError:
        raise DeepMedError(f"nnU-Net models need nnU-Net's network package dynamic_network_architectures: "
                           f"{INSTALL_HINT}") from None


def _locate(name: str, package: str, what: str):
    """``package.module.Class`` -> the class, for names under ``package`` that are torch modules."""
    import torch

    if not isinstance(name, str) or not name.startswith(package):
        raise DeepMedError(f"{what} {name!r}: only classes of {package.rstrip('.')} are accepted")
    module_name, _, class_name = name.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise DeepMedError(f"{what} {name!r}: not found (dynamic_network_architectures too old or too new?)") from None
    if not (isinstance(found, type) and issubclass(found, torch.nn.Module)):
        raise DeepMedError(f"{what} {name!r}: not a torch module class")
    return found


def network_args(architecture: dict, in_channels: int, out_channels: int) -> dict:
    """What the model card stores: class name, arguments, which arguments name torch classes, channel counts."""
    return {"network_class_name": architecture["network_class_name"],
            "arch_kwargs": dict(architecture["arch_kwargs"]),
            "requires_import": list(architecture.get("_kw_requires_import", [])),
            "input_channels": int(in_channels), "num_classes": int(out_channels)}


def build_network(args: dict):
    """The network for inference (deep supervision off), weights uninitialised."""
    _architectures()
    network_class = _locate(args["network_class_name"], NETWORK_PACKAGE, "network class")
    kwargs = dict(args["arch_kwargs"])
    for key in args.get("requires_import", []):
        if kwargs.get(key) is not None:
            kwargs[key] = _locate(kwargs[key], TORCH_PACKAGE, f"arch_kwargs.{key}")
    kwargs["deep_supervision"] = False
    try:
        return network_class(input_channels=args["input_channels"], num_classes=args["num_classes"], **kwargs)
    except TypeError as exc:
        raise DeepMedError(f"network {args['network_class_name']}: arguments from the plans do not fit "
                           f"({exc})") from None


def stored_weights(network) -> dict:
    """The state dict with each tensor once: nnU-Net's U-Nets hold their encoder twice (``decoder.encoder`` is
    ``encoder``), so the plain state dict names every encoder tensor twice (and safetensors would store both)."""
    seen: dict[tuple, str] = {}
    unique = {}
    for key, tensor in network.state_dict().items():
        identity = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tuple(tensor.stride()))
        if tensor.numel() and identity in seen:
            continue
        seen[identity] = key
        unique[key] = tensor.detach().clone().contiguous()
    return unique


def with_aliases(network, weights: dict) -> dict:
    """``weights`` with the names :func:`stored_weights` left out filled from the tensor they share."""
    state = network.state_dict()
    first: dict[tuple, str] = {}
    filled = dict(weights)
    for key, tensor in state.items():
        identity = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tuple(tensor.stride()))
        if tensor.numel() and identity in first and key not in filled and first[identity] in filled:
            filled[key] = filled[first[identity]]
        first.setdefault(identity, key)
    return filled


class StoredOnceNetwork:
    """Mixin for the inference network: ``load_state_dict`` accepts the weights as :func:`stored_weights` wrote
    them (and, for models imported before, with the duplicates)."""

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return super().load_state_dict(with_aliases(self, state_dict), strict=strict, assign=assign)


_STORED_ONCE: dict[type, type] = {}


def inference_network(args: dict):
    """:func:`build_network` whose ``load_state_dict`` takes the weights stored once."""
    network = build_network(args)
    base = type(network)
    if base not in _STORED_ONCE:
        _STORED_ONCE[base] = type(f"StoredOnce{base.__name__}", (StoredOnceNetwork, base), {})
    network.__class__ = _STORED_ONCE[base]
    return network
