"""The models the panels can offer: the per-user library of the engine (cards read as ``ModelCard``, no torch).

The library folder is this Slicer's choice (:func:`useLibraryFolder`, remembered between sessions), passed
explicitly to the engine functions and the workers the panels start (``--library``); the process environment
is left alone. ``changed`` fires when a training finishes or a model is added/removed, so every panel
refreshes its list.
"""

from __future__ import annotations

from pathlib import Path

from slicer.i18n import tr as _

from deepmed.errors import DeepMedError
from deepmed.model.card import ModelCard
from deepmed.zoo.library import InstalledModel, installed_models, library_dir, read_installed, resolve_model
from deepmed.zoo.library import new_model_dir as engine_new_model_dir
from DeepMedLib.BackgroundJob import BackgroundJob
from DeepMedLib.EngineCommand import engineCommand, engineEnvironment
from DeepMedLib.Signal import Signal

changed = Signal("str")


def outputWords() -> dict[str, str]:
    """Output kind -> how the panel names it (translated when asked, not at import)."""
    return {"label_map": _("segments"), "scalar_volume": _("predicted image"), "image": _("image on its own grid"),
            "table": _("case-level values (table)"), "sequence": _("sequence of images")}


_chosenFolder: Path | None = None  # this Slicer's library; None: the engine's default (``library_dir()``)


def useLibraryFolder(folder, announce: bool = True) -> Path:
    """Make ``folder`` the model library of the panels and of the workers they start (given as ``--library``);
    None: back to the engine's default (``$DEEPMED_LIBRARY`` or the per-user folder)."""
    global _chosenFolder
    if folder is None:
        _chosenFolder = None
        return libraryFolder()
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ValueError(_("{folder}: the model library must be an existing folder").format(folder=folder))
    _chosenFolder = folder
    if announce:
        changed.emit(str(folder))
    return folder


def libraryFolder() -> Path:
    """The library the panels use: the folder chosen in Slicer, else the engine's default."""
    return _chosenFolder if _chosenFolder is not None else library_dir()


def models(library: Path | None = None) -> list[InstalledModel]:
    return installed_models(library or libraryFolder())


def new_model_dir(name: str, library: Path | None = None) -> Path:
    """A fresh folder in the library for a model called ``name`` (the folder is created when missing)."""
    root = Path(library or libraryFolder())
    root.mkdir(parents=True, exist_ok=True)
    return engine_new_model_dir(name, root)


def modelsFor(application: str, library: Path | None = None) -> list[InstalledModel]:
    """The installed models a training of ``application`` can start from (fine-tuning): those made for it
    and those whose card says they can (``trainable_as``, e.g. an imported MONAI bundle's segmenter)."""
    return [model for model in models(library) if model.card.accepts_training_of(application)]


def findModel(model, library: Path | None = None) -> InstalledModel:
    """An InstalledModel from a library id, a model directory or an InstalledModel."""
    if isinstance(model, InstalledModel):
        return model
    path = resolve_model(str(model), library or libraryFolder())  # names the installed models when nothing matches
    found = read_installed(path)
    if found is None:
        try:
            ModelCard.read(path)  # says what is wrong: card missing or invalid, weights missing
        except DeepMedError as error:
            raise ValueError(str(error)) from None
    return found or read_installed(path)


def describe(model: InstalledModel) -> str:
    """A few lines for the panel: what the model does, its inputs and its outputs."""
    card = model.card
    lines = [card.description or model.id]
    images = ", ".join(f"{c.name} ({c.modality or '?'})" for c in card.inputs)
    conditions = ", ".join(c.name for c in model.conditions)
    words = outputWords()
    lines.append(_("Inputs: {inputs}").format(inputs=images or _("no image"))
                 + ("; " + _("conditions: {conditions}").format(conditions=conditions) if conditions else ""))
    if model.output_kind == "label_map":
        lines.append(_("Labels: {labels}").format(labels=", ".join(label.name for label in model.labels)
                                                  or _("none")))
    else:
        target = card.target
        what = (target.quantity if target is not None else None) or words.get(model.output_kind,
                                                                               words["scalar_volume"])
        unit = target.unit if target is not None else None
        lines.append(_("Output: {output}").format(output=what) + (f" [{unit}]" if unit else ""))
    if len(model.modes) > 1:
        lines.append(_("Modes: {modes}").format(modes=", ".join(
            f"{m.name} ({words.get(m.output_kind, m.output_kind)})" for m in model.modes)))
    if card.licence or card.version:
        lines.append(_("Version {version}, licence {licence}").format(
            version=card.version or "-", licence=card.licence or _("not stated"))
            + (", " + _("checksums verified at install") if (model.path / "SHA256SUMS").is_file() else ""))
    if len(model.versions) > 1:  # improved by the annotation loop: the promoted version runs
        lines.append(_("Library version {version} of {versions} (promoted: the one that runs)").format(
            version=model.version, versions=", ".join(f"@{v}" for v in model.versions)))
    if model.folds:
        lines.append(_("{folds}-fold ensemble (cross-validation): averages every fold; one fold is {folds}x "
                       "faster").format(folds=len(model.folds)) + _outOfFold(card))
    validation = card.validation
    if validation.get("best") is not None:
        lines.append(_("Validation {metric}: {value}").format(metric=validation.get("key_metric"),
                                                               value=f"{validation['best']:.3f}"))
    return "\n".join(lines)


def _outOfFold(card: ModelCard) -> str:
    scores = card.cross_validation.get("out_of_fold", {})
    shown = [f"{name} {score['mean']:.2f}" for name, score in scores.items() if score.get("mean") is not None]
    return "\n" + _("Out-of-fold: {scores}").format(scores=", ".join(shown)) if shown else ""


# ---- the zoo, through background workers (downloads and bundle conversion never block Slicer) -----------
def _zooJob(name: str, *arguments) -> BackgroundJob:
    command = engineCommand("zoo", "--progress", "jsonl", "--library", libraryFolder(), *arguments)
    job = BackgroundJob(command, env=engineEnvironment(), name=name)
    job.finished.connect(lambda result: _announce(job, result))
    return job.start()


def _announce(job: BackgroundJob, result) -> None:
    for event in job.events:
        if event["event"] == "installed" and result.succeeded:
            changed.emit(event["path"])


def catalogueJob() -> BackgroundJob:
    """``models`` event: every installed and catalogue model (id, title, version, task, size, licence, status)."""
    return _zooJob("model list", "list")


def addCatalogueJob(source: str) -> BackgroundJob:
    """Check a catalogue (path or URL) and remember it in the library's catalogs.txt."""
    return _zooJob("adding a catalogue", "add-catalog", source)


def pullJob(modelId: str) -> BackgroundJob:
    """``download`` events (done, total bytes), then ``installed``; nothing is installed unless sha256 matches."""
    return _zooJob(f"download of {modelId}", "pull", modelId)


def importJob(path, trustCode: bool = False) -> BackgroundJob:
    """``deepmed zoo import PATH [--trust-code]`` (the flag only after the user saw what would run)."""
    return _zooJob(f"import of {Path(path).name}", "import", str(path), *(["--trust-code"] if trustCode else []))


def inspectJob(path) -> BackgroundJob:
    """``deepmed zoo inspect BUNDLE --json``: what a bundle's ``--trust-code`` would run (nothing runs)."""
    return _zooJob(f"inspection of {Path(path).name}", "inspect", str(path), "--json")


def publishJob(modelDir, licence: str, title: str = "", version: str = "1.0.0", citation: str = "",
               zipPath: str = "") -> BackgroundJob:
    arguments = ["publish", str(modelDir), "--licence", licence, "--version", version or "1.0.0"]
    arguments += ["--title", title] if title else []
    arguments += ["--citation", citation] if citation else []
    arguments += ["-o", zipPath] if zipPath else []
    return _zooJob(f"publishing {Path(modelDir).name}", *arguments)


def removeModel(modelId: str) -> None:
    from deepmed.zoo.package import remove_model

    removed = remove_model(modelId, libraryFolder())
    changed.emit(str(removed[0]))


__all__ = ["InstalledModel", "addCatalogueJob", "catalogueJob", "changed", "describe", "findModel", "importJob",
           "libraryFolder", "models", "modelsFor", "new_model_dir", "publishJob", "pullJob", "removeModel",
           "useLibraryFolder"]
