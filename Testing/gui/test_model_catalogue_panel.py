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


@pytest.mark.slow
def test_a_bundle_that_needs_its_own_code_is_imported_only_after_the_user_saw_what_runs(openPanel, qtHarness,
                                                                                        tmp_path):
    """The real renalStructures_CECT_segmentation bundle (it needs its scripts/): the import is refused, the panel
    lists what would run (nothing runs), declining installs nothing, accepting imports it as a trusted model."""
    from trusted_bundle_data import renal_bundle

    panel = openPanel("DeepMedRun")
    bundle = renal_bundle(tmp_path)
    before = panel.ui.modelComboBox.count()
    qtHarness.confirmAnswer[0] = False
    panel.panel.importPackage(str(bundle))
    qtHarness.processEventsUntil(lambda: not panel.panel.zooJobs, timeout=240)
    kind, text = qtHarness.messages[-1]
    assert kind == "confirm" and "renal structures" in text
    assert "scripts/" in text and "Import with its code?" in text
    assert panel.ui.modelComboBox.count() == before and "not trusted" in panel.ui.statusLabel.text()
    qtHarness.confirmAnswer[0] = True
    panel.panel.importPackage(str(bundle))
    qtHarness.processEventsUntil(lambda: not panel.panel.zooJobs, timeout=240)
    assert panel.ui.modelComboBox.count() == before + 1, qtHarness.messages
    assert panel.ui.modelDescriptionLabel.text().startswith("Trusted MONAI bundle")
