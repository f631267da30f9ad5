"""The Segment panel offers the real MONAI Model Zoo bundles of the project's own catalogue (PySide6 offscreen)."""

import json

import pytest

pytestmark = pytest.mark.gui


def test_model_dropdown_offers_the_project_catalogue_bundles(qtHarness, openPanel, monkeypatch):
    from deepmed.zoo.catalog import BUNDLED_CATALOG

    monkeypatch.setenv("DEEPMED_CATALOGS", str(BUNDLED_CATALOG))  # the shipped catalogue, as a user has it
    bundles = [m for m in json.loads(BUNDLED_CATALOG.read_text())["models"] if m.get("format") == "monai-bundle"]
    assert any(m["id"] == "spleen_ct_segmentation" for m in bundles)
    panel = openPanel("DeepMedRun")
    ui = panel.ui
    items = [ui.modelComboBox.itemText(i) for i in range(ui.modelComboBox.count())]
    assert "boxes" in items[0]  # the installed model first, then what can be downloaded
    for bundle in bundles:
        assert f"{bundle['title']}: download {bundle['weights_mb']:.0f}+ MB, {bundle['licence']}" in items, items
    spleen = next(b for b in bundles if b["id"] == "spleen_ct_segmentation")
    ui.modelComboBox.setCurrentIndex(items.index(f"{spleen['title']}: download 19+ MB, Apache-2.0"))
    description = ui.modelDescriptionLabel.text()
    assert description.startswith(f"Spleen CT segmentation 0.5.9 ({spleen['task']})\nA pre-trained model")
    assert "Not installed" in description and "checked against the catalogue's SHA-1" in description
    assert ui.downloadModelButton.isEnabled() and not ui.applyButton.isEnabled()
    assert panel.panel.currentId() == "spleen_ct_segmentation" and qtHarness.messages == []
