"""The models the panels can offer: the per-user library of the engine (read as JSON, no torch here).

``changed`` fires when a training finishes or a model is added/removed, so every panel refreshes its list.
"""

from __future__ import annotations

from pathlib import Path

from deepmed.zoo.library import InstalledModel, installed_models, library_dir, new_model_dir, read_installed

from DeepMedLib.Signal import Signal

changed = Signal("str")


def models(library: Path | None = None) -> list[InstalledModel]:
    return installed_models(library)


def findModel(model) -> InstalledModel:
    """An InstalledModel from a library id, a model directory or an InstalledModel."""
    if isinstance(model, InstalledModel):
        return model
    path = Path(str(model))
    if not path.is_dir():
        path = library_dir() / str(model)
    found = read_installed(path) if path.is_dir() else None
    if found is None:
        known = ", ".join(m.id for m in installed_models()) or "none"
        raise ValueError(f"{model}: not a trained model (no model directory or library id; installed: {known})")
    return found


def describe(model: InstalledModel) -> str:
    """A few lines for the panel: what the model does, its inputs and its outputs."""
    card = model.card
    lines = [card.get("description") or model.id]
    inputs = card.get("inputs", [])
    lines.append("Inputs: " + ", ".join(f"{c.get('name')} ({c.get('modality', '?')})" for c in inputs))
    if model.application == "segmentation":
        lines.append("Labels: " + (", ".join(label["name"] for label in model.labels) or "none"))
    else:
        target = card.get("target", {})
        lines.append(f"Output: {target.get('quantity', 'predicted image')}"
                     + (f" [{target['unit']}]" if target.get("unit") else ""))
    validation = card.get("validation", {})
    if validation.get("best") is not None:
        lines.append(f"Validation {validation.get('key_metric')}: {validation['best']:.3f}")
    return "\n".join(lines)


__all__ = ["InstalledModel", "changed", "describe", "findModel", "library_dir", "models", "new_model_dir"]
