"""Network registry. Each entry resolves its constructor arguments (saved in the model card) from the
patch size and spacing, so that inference rebuilds the same network from data alone (no code in cards).

Networks registered with ``output="vector"`` map a whole image to one vector (B, out_channels) per case
(classifiers, case-level regressors); the others map an image to an image of the same extent.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from deepmed.errors import DeepMedError
from deepmed.planning.network import RULES as DENSE_RULES
from deepmed.planning.network import plan_dense_network
from deepmed.utils.registry import Registry

NETWORKS = Registry("network")


def network_arguments(name: str, in_channels: int, out_channels: int, patch_size: Sequence[int],
                      spacing: Sequence[float], user_args: dict | None = None) -> dict:
    """The full constructor arguments of network ``name`` (defaults derived, then the user's on top).

    ``patch_size`` and ``spacing`` are in array order (z, y, x); the voxel-wise networks are planned by
    :func:`deepmed.planning.network.plan_dense_network` (which also says which patches they take).
    """
    name = NETWORKS.canonical(name)
    if name in DENSE_RULES:  # patch and spacing in array order here, x, y, z there
        return plan_dense_network(name, in_channels, out_channels, list(reversed(patch_size)),
                                  list(reversed(spacing)), user_args).args
    args: dict = {"spatial_dims": 3, "in_channels": in_channels, "out_channels": out_channels}
    if name == "densenet":
        args.update(init_features=16, growth_rate=8, block_config=[2, 4, 4])
    elif name in ("resnet10", "resnet18"):
        args.update(conv1_t_stride=2)
    args.update(user_args or {})
    return args


def build_network(name: str, args: dict) -> torch.nn.Module:
    """Instantiate network ``name`` with the (already resolved) constructor ``args``."""
    factory = NETWORKS.get(name)
    try:
        return factory(**args)
    except (TypeError, ValueError, AssertionError) as exc:
        raise DeepMedError(f"network {name}: invalid arguments {args}: {exc}") from None


@NETWORKS.register("unet", "MONAI residual U-Net (Kerfoot et al.), general purpose")
def _unet(**args):
    from monai.networks.nets import UNet

    return UNet(**args)


@NETWORKS.register("basic_unet", "plain 3D U-Net (Falk et al.), MONAI BasicUNet")
def _basic_unet(**args):
    from monai.networks.nets import BasicUNet

    return BasicUNet(**args)


@NETWORKS.register("segresnet", "SegResNet (Myronenko 2018), residual encoder, BraTS winner")
def _segresnet(**args):
    from monai.networks.nets import SegResNet

    return SegResNet(**args)


@NETWORKS.register("dynunet", "DynUNet configured nnU-Net style from patch size and spacing")
def _dynunet(**args):
    from monai.networks.nets import DynUNet

    return DynUNet(**args)


@NETWORKS.register("swin_unetr", "Swin UNETR (Hatamizadeh et al. 2022), transformer encoder; patch divisible by 32")
def _swin_unetr(**args):
    from monai.networks.nets import SwinUNETR

    args = dict(args)
    args.pop("img_size", None)
    return SwinUNETR(**args)


@NETWORKS.register("unetr", "UNETR (Hatamizadeh et al. 2022), ViT encoder; fixed patch size divisible by 16")
def _unetr(**args):
    from monai.networks.nets import UNETR

    return UNETR(**args)


@NETWORKS.register("highresnet", "HighRes3DNet (Li et al. 2017), NiftyNet's dilated residual network")
def _highresnet(**args):
    from monai.networks.nets import HighResNet

    return HighResNet(**args)


# ---- whole image -> one vector per case (MONAI classification networks, 3D) -------------------------------
@NETWORKS.register("densenet", "DenseNet (Huang et al. 2017), configurable; small by default (3 blocks, growth 8)",
                   output="vector")
def _densenet(**args):
    from monai.networks.nets import DenseNet

    return DenseNet(**args)


@NETWORKS.register("densenet121", "DenseNet-121 (Huang et al. 2017), MONAI's 3D variant", output="vector")
def _densenet121(**args):
    from monai.networks.nets import DenseNet121

    return DenseNet121(**args)


def _resnet(depth: int, args: dict) -> torch.nn.Module:
    from monai.networks.nets import resnet10, resnet18

    args = dict(args)
    args["n_input_channels"], args["num_classes"] = args.pop("in_channels"), args.pop("out_channels")
    return {10: resnet10, 18: resnet18}[depth](**args)


@NETWORKS.register("resnet10", "3D ResNet-10 (Hara et al. 2018; MONAI), first convolution strided", output="vector")
def _resnet10(**args):
    return _resnet(10, args)


@NETWORKS.register("resnet18", "3D ResNet-18 (Hara et al. 2018; MONAI), first convolution strided", output="vector")
def _resnet18(**args):
    return _resnet(18, args)


@NETWORKS.register("efficientnet_b0", "EfficientNet-B0 (Tan & Le 2019), MONAI's 3D variant, trained from scratch",
                   output="vector")
def _efficientnet_b0(**args):
    from monai.networks.nets import EfficientNetBN

    args = dict(args)
    args["num_classes"] = args.pop("out_channels")
    return EfficientNetBN("efficientnet-b0", pretrained=False, **args)


def outputs_vector(name: str) -> bool:
    """Whether network ``name`` maps a whole image to one vector per case."""
    return NETWORKS.metadata(name).get("output") == "vector"


@NETWORKS.register("subpixel_sr", "sub-pixel convolution upsampler (ESPCN/EDSR): refines the grid by an integer "
                   "factor per axis, residual over trilinear", upsamples=True)
def _subpixel_sr(**args):
    from deepmed.networks.subpixel import SubpixelSR

    return SubpixelSR(**args)


@NETWORKS.register("vae", "MONAI VarAutoEncoder (Kingma & Welling 2014): a convolutional VAE")
def _vae(**args):
    from monai.networks.nets import VarAutoEncoder

    return VarAutoEncoder(**args)


@NETWORKS.register("vae_encoder", "encoder half of MONAI's VarAutoEncoder: image -> latent mean, log-variance")
def _vae_encoder(**args):
    from deepmed.networks.latent import LatentEncoder

    return LatentEncoder(**args)


@NETWORKS.register("vae_decoder", "decoder half of MONAI's VarAutoEncoder: latent code -> image")
def _vae_decoder(**args):
    from deepmed.networks.latent import LatentDecoder

    return LatentDecoder(**args)


@NETWORKS.register("conditional_generator", "3D DCGAN-style generator: noise + condition values (FiLM) -> volume",
                   role="generator")
def _conditional_generator(**args):
    from deepmed.networks.generative import ConditionalGenerator

    return ConditionalGenerator(**args)


@NETWORKS.register("projection_discriminator", "3D spectral-norm projection discriminator with a condition head",
                   role="discriminator")
def _projection_discriminator(**args):
    from deepmed.networks.generative import ProjectionDiscriminator

    return ProjectionDiscriminator(**args)
