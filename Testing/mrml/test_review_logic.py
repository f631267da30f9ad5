"""The Review logic on a real MRML scene, without workers: reading a ranking, loading a case on its grid."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from DeepMedLib.SelfTestData import syntheticArrays, syntheticImage

LABELS = [{"value": 1, "name": "box", "color": [200, 50, 50]}, {"value": 2, "name": "core", "color": [50, 50, 200]}]
HEADER = "rank,case,score,band_voxels,prediction,uncertainty,model,model_version,weights_sha256\n"


@pytest.fixture
def reviewFolder(tmp_path):
    """A dataset with one training case and two pool cases, and a review folder as deepmed review leaves it."""
    image, label = syntheticArrays(5)
    for name, array in (("t1", image), ("u1", image), ("u2", image)):
        sitk.WriteImage(syntheticImage(array), str(tmp_path / f"{name}.nii.gz"))
    sitk.WriteImage(syntheticImage(label), str(tmp_path / "t1_seg.nii.gz"))
    manifest = {"name": "boxes", "channel_names": {"0": "MR"}, "labels": {"background": 0, "box": 1, "core": 2},
                "training": [{"id": "t1", "image": "t1.nii.gz", "label": "t1_seg.nii.gz"}],
                "pool": [{"id": "u1", "image": "u1.nii.gz"}, {"id": "u2", "image": "u2.nii.gz"}]}
    (tmp_path / "dataset.json").write_text(json.dumps(manifest))
    review = tmp_path / "review"
    (review / "predictions").mkdir(parents=True)
    (review / "uncertainty").mkdir()
    sitk.WriteImage(syntheticImage(label), str(review / "predictions" / "u1.nii.gz"))
    sitk.WriteImage(syntheticImage(label, origin=(-9.0, 20.0, 5.0)), str(review / "predictions" / "u2.nii.gz"))
    sitk.WriteImage(syntheticImage((label > 0).astype(np.float32) * 0.7), str(review / "uncertainty" / "u1.nii.gz"))
    (review / "ranking.csv").write_text(
        HEADER + "2,u2,0.1,40,predictions/u2.nii.gz,,boxes,2,abc\n"
        "1,u1,0.3,50,predictions/u1.nii.gz,uncertainty/u1.nii.gz,boxes,2,abc\n")
    return review


def test_ranking_rows_in_rank_order_with_their_files_and_the_proposing_version(reviewFolder):
    from DeepMedReviewLib.Ranking import readRanking

    rows = readRanking(reviewFolder)
    assert [(r.rank, r.case, r.score) for r in rows] == [(1, "u1", 0.3), (2, "u2", 0.1)]
    assert rows[0].prediction == reviewFolder / "predictions" / "u1.nii.gz" and rows[1].uncertainty is None
    assert rows[0].proposedBy == "boxes@2"


def test_a_ranking_without_a_needed_column_is_refused_naming_the_file_and_column(reviewFolder):
    from DeepMedReviewLib.Ranking import RankingError, readRanking

    (reviewFolder / "ranking.csv").write_text("rank,case,score\n1,u1,0.3\n")
    with pytest.raises(RankingError, match=r"ranking\.csv.*missing prediction"):
        readRanking(reviewFolder)
    with pytest.raises(RankingError, match="no ranking yet"):
        readRanking(reviewFolder / "elsewhere")


def test_a_loaded_case_lies_on_its_image_grid_and_a_prediction_off_it_is_refused(reviewFolder, scene):
    import slicer
    from DeepMedReviewLib.Ranking import readRanking
    from DeepMedReviewLib.ReviewLogic import ReviewError, ReviewLogic

    from DeepMedLib import SceneBridge

    manifest = reviewFolder.parent / "dataset.json"
    first, second = readRanking(reviewFolder)
    loaded = ReviewLogic().loadCase(manifest, first, scene, LABELS)
    image = sitk.ReadImage(str(reviewFolder.parent / "u1.nii.gz"))
    volumeImage = SceneBridge.imageFromVolumeNode(loaded.volume)
    assert volumeImage.GetOrigin() == pytest.approx(image.GetOrigin())
    assert volumeImage.GetSpacing() == pytest.approx(image.GetSpacing())
    assert SceneBridge.segmentNames(loaded.segmentation) == ["box", "core"]
    assert slicer.util.arrayFromVolume(loaded.uncertainty).max() == pytest.approx(0.7)
    display = loaded.uncertainty.GetDisplayNode()  # a colour map over the fixed range 0 (sure) .. 1 (undecided)
    assert display.GetColorNodeID() == "vtkMRMLColorTableNodeRainbow"
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == (0.0, 1.0)
    assert not loaded.correctedByHand()
    segmentId = loaded.segmentation.GetSegmentation().GetSegmentIdBySegmentName("core")
    slicer.util.updateSegmentBinaryLabelmapFromArray(np.zeros(loaded.proposed.shape, np.uint8), loaded.segmentation,
                                                     segmentId, loaded.volume)
    assert loaded.correctedByHand()  # the core erased: differs from the prediction
    before = scene.GetNumberOfNodes()
    with pytest.raises(ReviewError, match=r"prediction u2\.nii\.gz is not on the grid"):
        ReviewLogic().loadCase(manifest, second, scene, LABELS)
    assert scene.GetNumberOfNodes() == before  # nothing of the refused case stays
    ReviewLogic.removeCase(loaded)
    assert scene.GetNodeByID(loaded.volume.GetID()) is None and scene.GetNumberOfNodes() < before


def test_the_comparison_reads_old_and_new_dice_per_label(tmp_path):
    from DeepMedReviewLib.Ranking import RankingError, readComparison

    path = tmp_path / "improvement.json"
    path.write_text(json.dumps({"model": "boxes", "old_version": 1, "new_version": 2, "cases": ["case3"],
                                "old": {"box": 0.8, "core": 0.5}, "new": {"box": 0.85, "core": 0.4},
                                "old_mean": 0.65, "new_mean": 0.625, "tolerance": 0.005, "promoted": False}))
    comparison = readComparison(path)
    assert (comparison.oldModel, comparison.newModel, comparison.promoted) == ("boxes@1", "boxes@2", False)
    assert [(s.label, s.old, s.new) for s in comparison.labels] == [("box", 0.8, 0.85), ("core", 0.5, 0.4)]
    assert comparison.heldOut == ["case3"] and "0.005" in comparison.reason
    path.write_text("[1, 2]")
    with pytest.raises(RankingError, match=r"improvement\.json.*'old' and 'new'"):
        readComparison(path)


def test_the_panel_promotes_with_the_engines_default_tolerance():
    """The Review panel's 'Promote within' starts at deepmed improve's own default."""
    import re
    import xml.etree.ElementTree as ElementTree
    from pathlib import Path

    from deepmed.zoo.versions import DEFAULT_TOLERANCE

    folder = Path(__file__).resolve().parents[2] / "SlicerDeepMed" / "Modules" / "DeepMedReview"
    root = ElementTree.parse(folder / "Resources" / "UI" / "DeepMedReview.ui").getroot()
    box = next(w for w in root.iter("widget") if w.get("name") == "improveToleranceSpinBox")
    value = next(p for p in box.iter("property") if p.get("name") == "value").findtext("double")
    assert float(value) == DEFAULT_TOLERANCE
    source = (folder / "DeepMedReview.py").read_text(encoding="utf-8")
    assert float(re.search(r"improveTolerance: .* = ([0-9.]+)", source).group(1)) == DEFAULT_TOLERANCE


def test_a_multichannel_case_loads_every_channel_and_leaves_with_them(reviewFolder, scene):
    from DeepMedReviewLib.Ranking import readRanking
    from DeepMedReviewLib.ReviewLogic import ReviewLogic

    manifestPath = reviewFolder.parent / "dataset.json"
    flair = syntheticImage(syntheticArrays(6)[0], origin=(-12.0, 20.0, 5.0))  # a channel on its own grid
    sitk.WriteImage(flair, str(reviewFolder.parent / "u1_flair.nii.gz"))
    manifest = json.loads(manifestPath.read_text())
    manifest["channel_names"] = {"0": "MR", "1": "FLAIR"}
    manifest["training"][0]["image"] = ["t1.nii.gz", "t1.nii.gz"]
    manifest["pool"] = [{"id": "u1", "image": ["u1.nii.gz", "u1_flair.nii.gz"]}]
    manifestPath.write_text(json.dumps(manifest))
    before = scene.GetNumberOfNodes()
    loaded = ReviewLogic().loadCase(manifestPath, readRanking(reviewFolder)[0], scene, LABELS)
    assert [node.GetName() for node in loaded.otherChannels] == ["u1 FLAIR"]
    from DeepMedLib import SceneBridge

    assert SceneBridge.imageFromVolumeNode(loaded.otherChannels[0]).GetOrigin() == pytest.approx(flair.GetOrigin())
    ReviewLogic.removeCase(loaded)
    assert scene.GetNumberOfNodes() == before
