"""Calibrated probabilities: the ECE (15 bins) on hand-made values, temperature scaling that recovers a known
temperature, the card's typed ``calibration`` section, the Predictor applying it (labels unchanged), and a tiny
training whose card holds a calibration with a lower ECE on held-out cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepmed.errors import DeepMedError
from deepmed.evaluation.calibration import (
    band_mask,
    expected_calibration_error,
    fit_temperature,
    logit_ece,
    probability_ece,
    sample_voxels,
)
from deepmed.model.card import ModelCard
from deepmed.model.card_calibration import Calibration
from deepmed.training.calibrate import CaseLogits, fit_calibration, sampled_logits


def test_ece_of_hand_made_confidences():
    # bin 13 ([0.867, 0.933)): confidence 0.9, accuracy 0.5; bin 9 ([0.6, 0.667)): confidence 0.6, accuracy 1
    assert expected_calibration_error([0.9, 0.9, 0.6, 0.6], [1, 0, 1, 1]) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    assert expected_calibration_error([1.0, 1.0], [1, 1]) == 0.0  # 1.0 falls in the last (closed) bin
    assert expected_calibration_error([0.95, 0.55], [1, 0]) == pytest.approx(0.5 * 0.05 + 0.5 * 0.55)
    # the same pairs in one bin cancel: |mean confidence - accuracy| of the bin, not per voxel
    assert expected_calibration_error([0.9, 0.9], [1, 0]) == pytest.approx(0.4)
    assert expected_calibration_error([0.9, 0.9], [1, 0], bins=1) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="length"):
        expected_calibration_error([0.5], [1, 0])


def test_probability_ece_uses_the_top_label():
    probabilities = np.array([[0.1, 0.9], [0.2, 0.8], [0.7, 0.3]])
    labels = np.array([1, 0, 0])  # right (0.9), wrong (0.8), right (0.7)
    expected = (abs(0.9 - 1) + abs(0.8 - 0) + abs(0.7 - 1)) / 3  # three different bins
    assert probability_ece(probabilities, labels) == pytest.approx(expected)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=200), st.integers(1, 30))
def test_ece_lies_in_zero_one(pairs, bins):
    confidence, correct = zip(*pairs)
    assert 0.0 <= expected_calibration_error(confidence, correct, bins) <= 1.0


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_perfectly_calibrated_data_have_ece_near_zero(seed):
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0, 1, 200_000)
    assert expected_calibration_error(confidence, rng.uniform(0, 1, confidence.size) < confidence) < 0.01


def overconfident_logits(factor: float, n: int = 60_000, classes: int = 3, seed: int = 0):
    """Logits whose softmax is calibrated (labels drawn from it), multiplied by ``factor``."""
    generator = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(n, classes, generator=generator)
    labels = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=generator)[:, 0]
    return factor * logits, labels


@pytest.mark.parametrize("factor", [0.5, 1.0, 2.5])
def test_temperature_fit_recovers_a_known_factor(factor):
    logits, labels = overconfident_logits(factor)
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(factor, rel=0.05)
    if factor != 1.0:
        assert logit_ece(logits, labels, temperature) < 0.5 * logit_ece(logits, labels)
    assert fit_temperature(logits[:0], labels[:0]) == 1.0


def test_band_is_the_dilated_union_of_both_foregrounds():
    reference, predicted = np.zeros((9, 9, 9), np.int16), np.zeros((9, 9, 9), np.int64)
    reference[4, 4, 4] = 2
    assert band_mask(reference, predicted, band=0).sum() == 1
    assert band_mask(reference, predicted, band=1).sum() == 27  # a 3x3x3 cube: Chebyshev distance 1
    predicted[0, 0, 0] = 1  # a false positive in a corner counts too
    assert band_mask(reference, predicted, band=1).sum() == 27 + 8
    assert not band_mask(np.zeros_like(reference), np.zeros_like(predicted)).any()
    mask = band_mask(reference, predicted, band=2)
    chosen = sample_voxels(mask, 20, seed=3)
    assert len(chosen) == 20 and mask.ravel()[chosen].all() and np.array_equal(chosen, sample_voxels(mask, 20, 3))
    assert len(sample_voxels(mask, 10**6)) == mask.sum()


def test_fit_calibration_holds_cases_out():
    cases = []
    for index in range(3):
        logits, labels = overconfident_logits(3.0, n=4000, seed=index)
        cases.append(CaseLogits(f"c{index}", logits, labels))
    calibration = fit_calibration(cases + [CaseLogits("empty", torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))])
    assert calibration.fitted_on == ("c0", "c1", "c2") and calibration.samples == 12_000
    assert calibration.temperature == pytest.approx(3.0, rel=0.1)
    assert calibration.ece.evaluated_on == "leave_one_case_out" and calibration.ece.bins == 15
    assert calibration.ece.after < 0.5 * calibration.ece.before
    assert fit_calibration(cases[:1]).ece.evaluated_on == "fitted_cases"
    assert fit_calibration([]) is None


def test_sampled_logits_keep_the_band_voxels_of_a_volume():
    reference = np.zeros((6, 7, 8), np.int16)
    reference[2:4, 2:5, 3:6] = 1
    logits = torch.zeros(2, 6, 7, 8)
    logits[1] = torch.from_numpy(reference * 4.0 - 2.0)
    sampled = sampled_logits("c", logits, reference, limit=10**6, band=1)
    assert sampled.labels.numel() == band_mask(reference, reference, 1).sum() and sampled.logits.shape[1] == 2
    assert torch.equal(sampled.logits.argmax(dim=1), sampled.labels)  # each voxel keeps its own logits and label
    assert sampled_logits("c", logits, reference, limit=7).labels.numel() == 7


def test_card_calibration_round_trips_and_is_typed():
    from test_model_card import full_document

    document = full_document()
    document["calibration"] = {"method": "temperature", "temperature": 1.7, "fold_temperatures": {"0": 1.5},
                               "fitted_on": ["c1"], "voxels": "foreground_band", "band": 3, "samples": 10,
                               "ece": {"bins": 15, "before": 0.2, "after": 0.05, "evaluated_on": "fitted_cases"}}
    card = ModelCard.from_dict(document)
    assert card.to_dict() == document and list(card.to_dict()) == list(document)
    assert card.calibration.temperature_for([0]) == 1.5 and card.calibration.temperature_for([1]) == 1.7
    assert card.calibration.temperature_for([0, 1]) == 1.7 and card.calibration.temperature_for(None) == 1.7
    assert card.calibration.ece.after == 0.05 and "0.2000 -> 0.0500" in card.calibration.summary()
    changed = card.with_values(calibration=Calibration(temperature=2.0, fitted_on=("c2",)))
    assert changed.to_dict()["calibration"]["temperature"] == 2.0 and card.calibration.temperature == 1.7
    without = {k: v for k, v in document.items() if k != "calibration"}
    assert ModelCard.from_dict(without).calibration is None and ModelCard.from_dict(without).to_dict() == without
    for bad, key in (({"method": "temperature", "temperature": 0}, "calibration/temperature"),
                     ({"method": "platt", "temperature": 1.0}, "calibration/method"),
                     ({"temperature": 1.0, "method": "temperature", "ece": {"before": 2, "after": 0}},
                      "calibration/ece/before")):
        with pytest.raises(DeepMedError, match=key):
            ModelCard.from_dict({**document, "calibration": bad}, "card.json")


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.5])
def test_probabilities_with_a_temperature_are_the_softmax_of_scaled_logits(temperature):
    from conftest import make_image

    from deepmed.applications import get_application
    from deepmed.applications.base import Prediction

    logits = 4.0 * torch.randn(3, 4, 5, 6, generator=torch.Generator().manual_seed(0))
    plain = torch.softmax(logits, dim=0).numpy()
    reference = make_image(shape_zyx=(4, 5, 6))
    result = Prediction(reference)
    get_application("segmentation").add_probabilities(result, lambda: iter(plain), reference, temperature=temperature)
    probabilities = np.moveaxis(sitk.GetArrayFromImage(result.probabilities), -1, 0)
    np.testing.assert_allclose(probabilities, torch.softmax(logits / temperature, dim=0).numpy(), atol=1e-5)
    entropy = sitk.GetArrayFromImage(result.uncertainty)
    assert entropy.min() >= 0 and entropy.max() <= 1.0001


@pytest.mark.slow
def test_training_calibrates_and_the_predictor_applies_it(tmp_path):
    from test_training import TINY, write_tiny_dataset

    from deepmed.inference.predictor import Predictor
    from deepmed.training.driver import train

    manifest = write_tiny_dataset(tmp_path / "data", n=5)
    events = []
    model_dir = train(manifest, tmp_path / "model", progress=events.append,
                      overrides=TINY + ["training.epochs=3", "training.val_fraction=0.4"])
    card = ModelCard.read(model_dir)
    calibration = card.calibration
    assert calibration is not None and calibration.method == "temperature" and calibration.temperature > 0
    assert len(calibration.fitted_on) == 2 and calibration.ece.evaluated_on == "leave_one_case_out"
    assert calibration.ece.after <= calibration.ece.before
    assert events[-1]["event"] == "finished" and events[-1]["calibration"] == calibration.to_dict()

    image = sitk.ReadImage(str(manifest.parent / "c0.nii.gz"))
    card_path = model_dir / "model_card.json"
    document = json.loads(card_path.read_text())

    def predict_with(temperature):
        if temperature is None:
            document.pop("calibration", None)
        else:
            document["calibration"] = {**calibration.to_dict(), "temperature": temperature}
        card_path.write_text(json.dumps(document))
        result = Predictor(model_dir, "cpu").predict(image, probabilities=True)
        return sitk.GetArrayFromImage(result.output), sitk.GetArrayFromImage(result.probabilities)

    labels_fitted, _ = predict_with(calibration.temperature)
    labels_plain, p_plain = predict_with(1.0)
    labels_soft, p_soft = predict_with(3.0)
    labels_none, p_none = predict_with(None)
    assert np.array_equal(labels_fitted, labels_plain) and np.array_equal(labels_soft, labels_plain)
    np.testing.assert_allclose(p_soft.sum(-1), 1.0, atol=1e-4)
    assert p_soft.max(-1).mean() < p_plain.max(-1).mean() - 0.01  # T = 3: less confident, same argmax
    assert np.array_equal(labels_none, labels_plain) and np.array_equal(p_none, p_plain)  # no calibration: T = 1


def write_probability_case(folder, temperature_card: float | None = None):
    """Reference: class 1 in half of a 4x4x4 volume; probabilities: 0.8 for class 1 everywhere (ECE 0.3)."""
    from conftest import make_image

    for name in ("ref", "pred", "prob"):
        (folder / name).mkdir(parents=True)
    image = make_image(shape_zyx=(4, 4, 4))
    reference = np.zeros((4, 4, 4), np.uint8)
    reference[:2] = 1
    for name, array in (("ref", reference), ("pred", np.ones_like(reference))):
        label = sitk.GetImageFromArray(array)
        label.CopyInformation(image)
        sitk.WriteImage(label, str(folder / name / "c0.nii.gz"))
    probabilities = sitk.GetImageFromArray(np.stack([np.full((4, 4, 4), 0.2, np.float32),
                                                     np.full((4, 4, 4), 0.8, np.float32)], axis=-1), isVector=True)
    probabilities.CopyInformation(image)
    sitk.WriteImage(probabilities, str(folder / "prob" / "c0.nii.gz"))
    model = folder / "model"
    model.mkdir()
    card = {"format": "deepmed-model/1", "application": "segmentation",
            "inputs": [{"name": "MR", "normalization": "zscore_foreground"}],
            "labels": [{"value": 0, "name": "background"}, {"value": 1, "name": "box"}]}
    if temperature_card is not None:
        card["calibration"] = {"method": "temperature", "temperature": temperature_card}
    (model / "model_card.json").write_text(json.dumps(card))
    return model


def test_evaluate_prints_the_ece_of_probability_maps_before_and_after(tmp_path, capsys):
    from deepmed.cli.main import main

    model = write_probability_case(tmp_path, temperature_card=2.0)
    base = ["evaluate", "-r", str(tmp_path / "ref"), "-p", str(tmp_path / "pred"), "--no-distances",
            "--probabilities", str(tmp_path / "prob")]
    assert main(base + ["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["ece"] == pytest.approx(0.3) and rows[0]["voxels"] == 64 and "ece_uncalibrated" not in rows[0]
    assert main(base + ["--json", "--model", str(model)]) == 0
    # before scaling: softmax(2 * log p) = (0.04, 0.64) / 0.68: confidence 0.941, accuracy 0.5
    assert json.loads(capsys.readouterr().out)[0]["ece_uncalibrated"] == pytest.approx(0.64 / 0.68 - 0.5)
    assert main(base + ["--model", str(model)]) == 0
    printed = capsys.readouterr().out
    assert "ECE 0.4412 -> after 0.3000" in printed and "T = 2" in printed
    (tmp_path / "prob" / "c0.nii.gz").rename(tmp_path / "prob" / "other.nii.gz")
    assert main(base) == 2
    assert "c0" in capsys.readouterr().err
