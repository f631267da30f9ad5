"""A refinement's network passes see the field of view the network was trained on: windows of the plan's patch,
whatever the region (a larger pass changes what instance normalisation sees)."""

import numpy as np
import torch

from deepmed.applications.interactive_refine import label_probability


class ShapeSpy(torch.nn.Module):
    """A 1x1x1 convolution (2 classes) that records the spatial shape of every input it gets."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = torch.nn.Conv3d(channels, 2, 1)
        self.shapes: list[tuple[int, ...]] = []
        self.windows = 0

    def forward(self, x):
        self.shapes.append(tuple(x.shape[2:]))
        self.windows += x.shape[0]
        return self.conv(x)


def test_every_pass_is_one_patch_for_a_region_larger_than_it():
    spy = ShapeSpy(4)
    image, planes = np.random.rand(1, 40, 70, 50).astype(np.float32), np.zeros((3, 40, 70, 50), np.float32)
    probability = label_probability([spy], image, planes, 1, patch_xyz=[24, 32, 16], device=torch.device("cpu"))
    assert probability.shape == (40, 70, 50) and np.all((probability >= 0) & (probability <= 1))
    assert spy.shapes and set(spy.shapes) == {(16, 32, 24)}  # z, y, x of the x y z patch
    assert spy.windows >= 2 * 3 * 3 * 3  # overlapping windows: twice a tiling's 3 x 3 x 3 at least


def test_networks_are_averaged():
    first, second = ShapeSpy(2), ShapeSpy(2)
    with torch.no_grad():
        for spy, bias in ((first, 3.0), (second, -3.0)):
            spy.conv.weight.zero_()
            spy.conv.bias.copy_(torch.tensor([0.0, bias]))
    image, planes = np.zeros((1, 8, 8, 8), np.float32), np.zeros((1, 8, 8, 8), np.float32)
    both = label_probability([first, second], image, planes, 1, patch_xyz=[8, 8, 8], device=torch.device("cpu"))
    np.testing.assert_allclose(both, 0.5, atol=1e-2)  # sigmoid(3) and sigmoid(-3) average to 0.5
