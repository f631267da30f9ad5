"""Networks by name: ``NETWORKS.get(name)(in_channels, out_channels, patch_size, spacing, **args)``."""

from deepmed.networks.registry import NETWORKS, build_network, network_arguments, outputs_vector

__all__ = ["NETWORKS", "build_network", "network_arguments", "outputs_vector"]
