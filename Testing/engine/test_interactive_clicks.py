"""Clicks files (parsing, errors, RAS/LPS) and the standard click-simulation protocol."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepmed.errors import DeepMedError
from deepmed.interactive.clicks import Click, ClickSet, read_clicks, write_clicks
from deepmed.interactive.simulate import next_click


def _write(tmp_path, document, name="clicks.json"):
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def test_clicks_round_trip_and_ras_to_lps(tmp_path):
    document = {"coordinates": "RAS", "clicks": [
        {"point": [1.5, -2.0, 3.0], "label": "lesion", "positive": True},
        {"point": [4, 5, 6], "label": "lesion", "positive": False}]}
    clicks = read_clicks(_write(tmp_path, document))
    assert clicks.coordinates == "RAS"
    assert clicks.clicks[0] == Click((1.5, -2.0, 3.0), True, "lesion")
    assert clicks.clicks[1].positive is False
    lps = clicks.to_lps()
    assert lps.coordinates == "LPS"
    assert [c.point for c in lps.clicks] == [(-1.5, 2.0, 3.0), (-4.0, -5.0, 6.0)]
    assert lps.to_lps() is lps
    out = tmp_path / "again.json"
    write_clicks(clicks, out)
    assert read_clicks(out) == clicks
    assert ClickSet.from_dict(clicks.to_dict()) == clicks


@pytest.mark.parametrize("document, key", [
    ({"clicks": []}, "coordinates"),
    ({"coordinates": "XYZ", "clicks": []}, "coordinates"),
    ({"coordinates": "LPS", "clicks": {"point": [1, 2, 3]}}, "clicks"),
    ({"coordinates": "LPS", "clicks": [{"point": [1, 2], "label": "a"}]}, "clicks[0]"),
    ({"coordinates": "LPS", "clicks": [{"point": [1, 2, "x"], "label": "a"}]}, "point"),
    ({"coordinates": "LPS", "clicks": [{"point": [1, 2, 3], "label": "a"}, {"point": [1, 2, 3]}]}, "clicks[1]"),
    ({"coordinates": "LPS", "clicks": [{"point": [1, 2, 3], "label": "a", "positive": "yes"}]}, "positive"),
    ([1, 2], "JSON object"),
])
def test_bad_clicks_name_the_file_and_key(tmp_path, document, key):
    path = _write(tmp_path, document)
    with pytest.raises(DeepMedError) as error:
        read_clicks(path)
    assert str(path) in str(error.value) and key in str(error.value)


def test_unreadable_clicks_file(tmp_path):
    with pytest.raises(DeepMedError, match="not found"):
        read_clicks(tmp_path / "missing.json")
    with pytest.raises(DeepMedError, match="JSON"):
        read_clicks(_write(tmp_path, "{not json"))


def test_next_click_none_when_equal():
    truth = np.zeros((5, 6, 7), bool)
    truth[1:3, 1:3, 1:3] = True
    assert next_click(truth.copy(), truth) is None


def test_next_click_picks_largest_component_and_its_centre():
    truth = np.zeros((9, 20, 20), bool)
    truth[1:8, 2:17, 2:17] = True          # a big cube, missed entirely: FN
    prediction = np.zeros_like(truth)
    prediction[0:2, 18:20, 18:20] = True   # a small false positive
    click = next_click(prediction, truth)
    assert click.positive is True
    assert click.index_zyx == (4, 9, 9)    # the centre of the missed cube
    # When the false positive is the largest error, the click is negative and inside it
    prediction = truth.copy()
    prediction[0:9, 0:2, 0:20] = True
    prediction[1:8, 2:3, 2:17] = False     # a small FN sheet
    click = next_click(prediction, truth)
    assert click.positive is False
    assert prediction[click.index_zyx] and not truth[click.index_zyx]


def test_next_click_uses_spacing():
    # An error slab 3 voxels thick in z and 11 wide in x: with spacing 5 mm in z the centre in z
    # stays at the slab centre; the click is the voxel farthest from the border in mm.
    truth = np.zeros((3, 5, 11), bool)
    truth[:, :, :] = True
    prediction = np.zeros_like(truth)
    iso = next_click(prediction, truth)
    assert iso.index_zyx == (1, 2, 5)
    # Two components: in voxels the left one (3x5x4 = 60) is smaller than the right (3x5x6 = 90)
    truth2 = np.zeros((3, 5, 12), bool)
    truth2[:, :, 0:4] = True
    truth2[:, :, 6:12] = True
    click = next_click(np.zeros_like(truth2), truth2, spacing_zyx=(1.0, 1.0, 1.0))
    assert 6 <= click.index_zyx[2] < 12
    # Anisotropic spacing: x spacing 0.1 mm makes the farthest-from-border voxel lie in the centre of y
    # (the y extent dominates distance), not depend on x
    aniso = next_click(prediction, truth, spacing_zyx=(1.0, 1.0, 0.1))
    assert aniso.index_zyx[:2] == (1, 2)
    far = next_click(prediction, truth, spacing_zyx=(10.0, 0.1, 0.1))
    assert far.index_zyx[1] == 2 and far.index_zyx[2] == 5


def test_next_click_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        next_click(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)))


def test_clickset_rejects_bad_system():
    with pytest.raises(DeepMedError, match="coordinates"):
        ClickSet((), "IJK")
