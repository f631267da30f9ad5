"""The model card as a type: every card the engine meets loads and saves unchanged, bad cards are refused
naming the file and the key, the rules readers share (output kind, default mode, inputs check) live with the
card, and the card module (and what the Slicer GUI imports of the engine) never imports torch."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from deepmed.errors import DeepMedError
from deepmed.model.card import CARD, WEIGHTS, Label, Mode, ModelCard, check_inputs

REPO = Path(__file__).resolve().parents[2]
DEMO_ZIP = REPO / "Resources" / "Models" / "demo-organ-lesion-1.0.0.zip"
BUNDLES = REPO.parent / "shared" / "data" / "monai-bundles"
ENGINE = REPO / "SlicerDeepMed"


def demo_document() -> dict:
    with zipfile.ZipFile(DEMO_ZIP) as archive:
        name = next(n for n in archive.namelist() if n.endswith(CARD))
        return json.loads(archive.read(name))


def full_document() -> dict:
    """A card using every part of the schema, the fields no reader names included."""
    return {
        "format": "deepmed-model/1", "id": "full", "version": "1.2.0", "title": "Full", "description": "d",
        "application": "segmentation", "output_kind": "label_map", "engine_version": "0.1.0",
        "created": "2026-01-01T00:00:00+00:00", "authors": ["A", "B"], "licence": "CC-BY-4.0", "citation": "c",
        "references": ["r"], "intended_use": "research", "source": {"format": "monai-bundle", "name": "x"},
        "inputs": [{"name": "CT", "modality": "CT", "normalization": "ct", "statistics": {"p0_5": -1000.0},
                    "assumptions": "HU"}],
        "labels": [{"value": 0, "name": "background"},
                   {"value": 1, "name": "liver", "color": [1, 2, 3], "snomed": "10200004"},
                   {"value": 2, "name": "lesion", "terminology": {
                       "category": {"scheme": "SCT", "value": "49755003", "meaning": "Morphologically Altered Structure"},
                       "type": {"scheme": "SCT", "value": "108369006", "meaning": "Neoplasm"}}}],
        "target": {"quantity": "q", "unit": "mm"}, "spacing": [1.0, 1.0, 2.0], "patch_size": [64, 64, 32],
        "orientation": "RAS", "array_axes": "xyz", "network": {"name": "unet", "args": {"out_channels": 2}},
        "inference": {"overlap": 0.5}, "training": {"epochs": 3}, "task": {"image_key": "image"},
        "folds": [0, 1], "fold_inputs": {"0": [{"name": "CT", "normalization": "ct"}]},
        "postprocessing": {"keep_largest": [1]}, "cross_validation": {"folds": 2}, "validation": {"best": 0.9},
        "modes": [{"name": "predict", "output_kind": "label_map", "inputs": "images", "description": "m"}],
        "conditions": [{"name": "radius", "min": 1, "max": 2, "unit": "mm"}],
        "output_grid": {"size": [2, 2, 2], "spacing": [1, 1, 1], "origin": [0, 0, 0],
                        "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1]},
        "trust_code": False, "trusted_code": {"imports": ["scripts"]}, "trainable_as": ["segmentation"],
        "settings": {"threshold": 0.5}, "memory": {"weights_mb": 1.0, "note": "n"}}


def test_the_demo_card_round_trips_unchanged_and_reads_typed():
    document = demo_document()
    card = ModelCard.from_dict(document)
    assert card.to_dict() == document and list(card.to_dict()) == list(document)  # same keys, same order
    assert card.output_kind is None and card.kind == "label_map"  # written before the field existed
    assert card.available_modes == (Mode("predict", "label_map", "images"),)
    assert card.channel_names == ["MR"] and [label.name for label in card.foreground_labels] == ["organ", "lesion"]
    assert card.network.name == "unet" and card.patch_size == (48, 48, 32)


def test_every_schema_field_survives_a_round_trip_and_changes_make_new_cards():
    document = full_document()
    card = ModelCard.from_dict(document)
    assert card.to_dict() == document
    assert card.labels[1] == Label(1, "liver", (1, 2, 3), "10200004") and card.conditions[0].unit == "mm"
    changed = card.with_values(version="2.0.0", folds=(0,))
    assert changed.to_dict()["version"] == "2.0.0" and card.version == "1.2.0" and card.folds == (0, 1)
    with pytest.raises(AttributeError):
        card.version = "3"  # frozen


@pytest.mark.parametrize("bundle", sorted(p.name for p in BUNDLES.glob("*") if (p / "configs").is_dir())
                         if BUNDLES.is_dir() else [])
def test_cards_converted_from_real_monai_bundles_round_trip(bundle):
    from deepmed.zoo.bundle import card_from_bundle
    from deepmed.zoo.bundle_config import BundleConfig, find_inference_config, read_config_file

    folder = BUNDLES / bundle
    metadata = json.loads((folder / "configs" / "metadata.json").read_text(encoding="utf-8"))
    path = find_inference_config(folder, bundle)
    config = BundleConfig(read_config_file(path, bundle), bundle, folder, {})
    config.path_name = path.name
    try:
        document = card_from_bundle(metadata, config, folder)
    except DeepMedError:  # needs its own code (--trust-code): not a data card
        pytest.skip(f"{bundle}: not importable as data")
    card = ModelCard.from_dict(document, bundle)
    assert card.to_dict() == document
    assert card.kind in ("label_map", "overlapping_masks") and len(card.inputs) >= 1


@pytest.mark.parametrize("edit, key", [
    (lambda d: d["inputs"][0].update(normalization="unknown"), "inputs/0/normalization"),
    (lambda d: d.pop("application"), "application"),
    (lambda d: d["labels"].append({"value": -1, "name": "x"}), "labels/3/value"),
    (lambda d: d.update(trust_code="yes"), "trust_code"),
    (lambda d: d.update(format="deepmed-model/2"), "format"),
    (lambda d: d["labels"][1].update(terminology={"category": {"scheme": "SCT", "value": "1", "meaning": "x"}}),
     "labels/1/terminology"),
    (lambda d: d["labels"][1].update(snomed="10200004", terminology={
        "category": {"scheme": "SCT", "value": "91723000", "meaning": "Anatomical Structure"},
        "type": {"scheme": "SCT", "value": "71854001", "meaning": "Colon"}}), "labels/1"),
])
def test_a_bad_card_is_refused_naming_the_file_and_the_key(tmp_path, edit, key):
    document = demo_document()
    edit(document)
    (tmp_path / CARD).write_text(json.dumps(document))
    (tmp_path / WEIGHTS).write_bytes(b"")
    with pytest.raises(DeepMedError) as error:
        ModelCard.read(tmp_path)
    message = str(error.value)
    assert str(tmp_path / CARD) in message and key in message and "\n" not in message


def test_labels_have_codes_their_own_or_generic_ones():
    from deepmed.model.terminology import ANATOMICAL_STRUCTURE, TISSUE, Code

    liver, lesion = ModelCard.from_dict(full_document()).foreground_labels
    assert (liver.codes.category, liver.codes.type) == (ANATOMICAL_STRUCTURE, Code("SCT", "10200004", "liver"))
    assert (lesion.codes.category.value, lesion.codes.type) == ("49755003", Code("SCT", "108369006", "Neoplasm"))
    assert Label(3, "other").codes.category == Label(3, "other").codes.type == TISSUE


def test_a_card_that_fails_the_schema_is_never_written(tmp_path):
    card = ModelCard.from_dict(demo_document()).with_values(orientation="SAR")
    with pytest.raises(DeepMedError, match="orientation"):
        card.write(tmp_path)
    assert not (tmp_path / CARD).exists()
    ModelCard.from_dict(demo_document()).write(tmp_path)
    assert json.loads((tmp_path / CARD).read_text()) == demo_document()


def test_missing_directory_card_or_weights_are_one_line_errors(tmp_path):
    with pytest.raises(DeepMedError, match="not found"):
        ModelCard.read(tmp_path / "nowhere")
    with pytest.raises(DeepMedError, match=CARD):
        ModelCard.read(tmp_path)
    (tmp_path / CARD).write_text("{")
    with pytest.raises(DeepMedError, match="JSON syntax"):
        ModelCard.read(tmp_path)
    (tmp_path / CARD).write_text(json.dumps(demo_document()))
    with pytest.raises(DeepMedError, match=WEIGHTS):
        ModelCard.read(tmp_path)
    assert ModelCard.read(tmp_path, need_weights=False).application == "segmentation"


def test_the_inputs_check_is_the_cards():
    card = ModelCard.from_dict(full_document()).with_values(
        modes=(Mode("predict", "label_map", "images"), Mode("pair", "sequence", "pair"),
               Mode("make", "image", "conditions")))
    check_inputs(card, card.mode(), 1, None)
    check_inputs(card, card.mode("pair"), 2, None)
    check_inputs(card, card.mode("make"), 0, [1.5])
    for mode, count, condition, named in (("predict", 2, None, "CT"), ("pair", 1, None, "pair"),
                                          ("make", 1, [1.0], "make"), ("make", 0, None, "radius")):
        with pytest.raises(DeepMedError, match=named):
            check_inputs(card, card.mode(mode), count, condition, "model m")
    with pytest.raises(DeepMedError, match="predict, pair, make"):
        card.mode("other")


def test_the_library_and_the_predictor_read_the_same_card(tmp_path):
    from deepmed.zoo.library import read_installed

    (tmp_path / CARD).write_text(json.dumps(demo_document()))
    assert read_installed(tmp_path) is None  # no weights: not a finished model
    (tmp_path / WEIGHTS).write_bytes(b"")
    model = read_installed(tmp_path)
    assert model.card == ModelCard.from_dict(demo_document()) and model.mode().name == "predict"
    assert model.output_kind == "label_map" and model.input_names == ["MR"]
    (tmp_path / CARD).write_text(json.dumps({**demo_document(), "orientation": "SAR"}))
    assert read_installed(tmp_path) is None  # a card failing its schema is not offered


def _engine_imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return sorted({node.module for node in ast.walk(tree)
                   if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("deepmed")})


def test_the_card_and_what_the_gui_imports_of_the_engine_need_no_torch():
    modules = ["deepmed.model.card", "deepmed.model.directory", "deepmed.zoo.library"]
    modules += _engine_imports_of(ENGINE / "Modules" / "DeepMedLib" / "ModelLibrary.py")
    modules += _engine_imports_of(ENGINE / "Modules" / "DeepMedRun" / "DeepMedRunLib" / "RunLogic.py")
    code = (f"import sys, json\nfor m in {sorted(set(modules))!r}: __import__(m)\n"
            "from deepmed.model.card import ModelCard\n"
            f"ModelCard.from_dict(json.loads({json.dumps(json.dumps(demo_document()))}))\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'monai'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(ENGINE), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [] and "deepmed.model.card" in modules


def test_zoo_verify_names_a_library_model_whose_card_fails_its_schema(tmp_path, capsys):
    from deepmed.cli.main import main

    for name, document in (("good", demo_document()), ("bad", {**demo_document(), "orientation": "SAR"})):
        (tmp_path / name).mkdir()
        (tmp_path / name / CARD).write_text(json.dumps(document))
        (tmp_path / name / WEIGHTS).write_bytes(b"")
    assert main(["zoo", "--library", str(tmp_path), "verify", "bad"]) == 2
    output = capsys.readouterr().out
    assert output.startswith("bad: 1 problem(s)") and "orientation" in output and str(tmp_path / "bad" / CARD) in output
