"""The Train panel's settings widgets: the typed engine settings they hold (written to the worker's config
file) and the defaults a dataset check fills in."""

from __future__ import annotations

import qt  # noqa: F401  (widget code in property style: PythonQt, or the test harness's true_property)
from slicer.i18n import tr as _

from DeepMedTrainLib.TrainLogic import parseSettingValue

AUGMENTATIONS = ["flip", "rotate", "scale", "elastic", "noise", "gamma", "bias_field", "contrast"]


def settingsFromWidgets(ui) -> dict:
    """Typed engine settings from the widgets, by dotted key (written to the worker's config file)."""
    settings = {"loss.name": ui.lossComboBox.currentText}
    if int(ui.batchSizeSpinBox.value) > 0:  # 0 shows "auto": the application plans batch size and lr
        settings["training.batch_size"] = int(ui.batchSizeSpinBox.value)
    if float(ui.learningRateSpinBox.value) > 0:
        settings["optimizer.lr"] = float(ui.learningRateSpinBox.value)
    if ui.networkComboBox.currentText != "auto":
        settings["network.name"] = ui.networkComboBox.currentText
    patch = ui.patchSizeLineEdit.text.strip() or "auto"
    try:
        settings["data.patch_size"] = "auto" if patch == "auto" else \
            [int(v) for v in patch.replace("x", ",").split(",")]
    except ValueError:
        raise ValueError(_("patch size '{value}': expected auto or three whole numbers, e.g. 96,96,64").format(
            value=patch)) from None
    if not ui.augmentationCheckBox.checked:
        settings.update({f"augmentation.{name}": False for name in AUGMENTATIONS})
    for assignment in ui.extraSettingsLineEdit.text.split(";"):
        if assignment.strip():
            key, separator, value = assignment.partition("=")
            if not separator or not key.strip():
                raise ValueError(_("'{setting}': expected key=value (as deepmed train --set)").format(
                    setting=assignment.strip()))
            settings[key.strip()] = parseSettingValue(value)
    return settings


def applyReport(ui, report: dict):
    """Show the check's outcome and fill data-derived defaults (patch size) from the fingerprint."""
    fingerprint = report.get("fingerprint", {})
    problems = report.get("problems", [])
    lines = [_("{cases} case(s), {labelled} with labels").format(cases=fingerprint.get("cases", 0),
                                                                 labelled=fingerprint.get("training_cases", 0))]
    if "spacing" in fingerprint:
        lines.append(_("median spacing {spacing} mm").format(
            spacing=" x ".join(f"{v:.2f}" for v in fingerprint["spacing"]["median"])))
    if problems:
        lines.append(_("{count} problem(s); first: {problem}").format(count=len(problems), problem=problems[0]))
    else:
        lines.append(_("no problems found"))
    ui.datasetSummaryLabel.text = "\n".join(lines)
    suggested = report.get("suggested", {})
    if suggested.get("patch_size") and ui.patchSizeLineEdit.text.strip() in ("", "auto"):
        ui.patchSizeLineEdit.text = ",".join(str(v) for v in suggested["patch_size"])
