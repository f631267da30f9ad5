"""A click's region goes through the network in one pass when small enough; large regions slide the patch."""

from deepmed.applications.interactive_refine import ONE_PASS_VOXELS, one_pass_window


def test_a_click_region_is_one_window_rounded_to_what_the_network_takes():
    assert one_pass_window((120, 128, 130), (48, 48, 48)) == [144, 128, 128]  # x y z, multiples of 16
    assert one_pass_window((20, 20, 24), (16, 16, 16)) == [32, 32, 32]
    assert one_pass_window((64, 64, 64), (96, 160, 80)) == [64, 64, 64]  # at most 32


def test_a_whole_image_slides_the_patch():
    assert one_pass_window((300, 512, 512), (48, 48, 48)) is None
    side = round(ONE_PASS_VOXELS ** (1 / 3))
    assert one_pass_window((side, side, side + 16), (16, 16, 16)) is None
