"""The per-user model library: one model directory per model, ``LIBRARY/<model id>/model_card.json``.

The location is ``$DEEPMED_LIBRARY`` when set, else a per-user data folder
(``~/.local/share/deepmed/models`` on Linux, ``~/Library/Application Support/deepmed/models`` on macOS,
``%LOCALAPPDATA%\\deepmed\\models`` on Windows). Trained models land here by default in Slicer;
``deepmed infer --model ID`` accepts a library id as well as a directory.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from deepmed.errors import DeepMedError
from deepmed.model.card import CARD, Condition, Label, Mode, ModelCard

LIBRARY_VARIABLE = "DEEPMED_LIBRARY"
MODEL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def default_library_dir() -> Path:
    home = Path.home()
    if sys.platform.startswith("win"):
        base = Path(os.environ.get("LOCALAPPDATA", home / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", home / ".local" / "share"))
    return base / "deepmed" / "models"


def library_dir(create: bool = False) -> Path:
    """The library folder (``$DEEPMED_LIBRARY`` or the per-user default); ``create`` makes it."""
    configured = os.environ.get(LIBRARY_VARIABLE)
    path = Path(configured).expanduser() if configured else default_library_dir()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def check_model_id(model_id: str) -> str:
    if not MODEL_ID_PATTERN.match(model_id or ""):
        raise DeepMedError(f"model id {model_id!r}: expected letters, digits, '.', '_' or '-' (at most 100), "
                           "starting with a letter or digit")
    return model_id


@dataclass(frozen=True)
class InstalledModel:
    """A model directory in the library with its card (a ModelCard; no torch)."""

    id: str
    path: Path
    card: ModelCard
    version: int = 1                 # the library version this folder holds (``name@N``; zoo/versions.py)
    versions: tuple[int, ...] = (1,)  # every version of this model in the library
    promoted: bool = True            # whether ``version`` is the one the plain name resolves to

    @property
    def name(self) -> str:
        """The model's name without a version."""
        from deepmed.zoo.versions import split_version

        return split_version(self.id)[0]

    @property
    def application(self) -> str:
        return self.card.application

    @property
    def title(self) -> str:
        return self.card.title or self.id

    @property
    def description(self) -> str:
        return self.card.description or ""

    @property
    def input_names(self) -> list[str]:
        return self.card.channel_names

    @property
    def labels(self) -> tuple[Label, ...]:
        """The labels besides background."""
        return self.card.foreground_labels

    @property
    def output_kind(self) -> str:
        return self.card.kind

    @property
    def folds(self) -> list[int]:
        """The cross-validation folds of an ensemble (empty for a single model)."""
        return list(self.card.folds)

    @property
    def modes(self) -> tuple[Mode, ...]:
        """What the model can be asked for; one image mode by default (the Predictor's rule)."""
        return self.card.available_modes

    def mode(self, name: str | None = None) -> Mode:
        """The mode called ``name`` (default: the first); DeepMedError names the model's modes."""
        return self.card.mode(name, f"model {self.id}")

    @property
    def conditions(self) -> tuple[Condition, ...]:
        """Named values a conditional generator takes (name, min, max, unit)."""
        return self.card.conditions


def read_installed(path: Path) -> InstalledModel | None:
    """The model in ``path``, or None when it is not a finished deepmed model directory with a valid card.
    A library folder ``name@N`` is version N of ``name`` (its other versions and promotion read alongside)."""
    from deepmed.zoo.versions import available_versions, promoted_version, split_version

    path = Path(path)
    try:
        card = ModelCard.read(path)
    except DeepMedError:
        return None
    name, number = split_version(path.name)
    versions = tuple(available_versions(path.parent, name)) or (number or 1,)
    promoted = promoted_version(path.parent, name) if len(versions) > 1 else (number or 1)
    return InstalledModel(id=path.name, path=path, card=card, version=number or 1, versions=versions,
                          promoted=promoted == (number or 1))


def installed_models(library: Path | None = None, all_versions: bool = False) -> list[InstalledModel]:
    """Every finished model in the library, sorted by id (unfinished or foreign folders are skipped): one
    entry per model, its promoted version under the plain name (``versions`` lists them all); with
    ``all_versions`` every version's folder (ids ``name`` for version 1, ``name@N``)."""
    from deepmed.zoo.versions import split_version

    root = Path(library) if library is not None else library_dir()
    if not root.is_dir():
        return []
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    models = [m for m in (read_installed(p) for p in folders) if m is not None]
    if all_versions:
        return models
    promoted = [m for m in models if m.promoted]
    unversioned = {m.name for m in promoted}  # a model whose promoted folder is unreadable: its newest readable
    extra = {}
    for model in models:
        if model.name not in unversioned:
            extra[model.name] = model
    chosen = [replace(m, id=split_version(m.id)[0]) for m in promoted + list(extra.values())]
    return sorted(chosen, key=lambda m: m.id)


def unusable_models(library: Path | None = None) -> list[tuple[str, str]]:
    """Library folders whose model card cannot be used (it fails its schema, or the weights are missing), as
    (id, the one-line reason): ``installed_models`` skips them, ``deepmed zoo verify`` names them."""
    root = Path(library) if library is not None else library_dir()
    if not root.is_dir():
        return []
    found = []
    for path in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (path / CARD).is_file():
            try:
                ModelCard.read(path)
            except DeepMedError as error:
                found.append((path.name, str(error)))
    return found


def resolve_model(model: str | os.PathLike, library: Path | None = None) -> Path:
    """A model directory given as a path, or as the id of a model in the library: ``name`` is its promoted
    version, ``name@N`` version N (zoo/versions.py)."""
    from deepmed.zoo.versions import promoted_version, split_version

    path = Path(model)
    if path.is_dir():
        return path
    root = Path(library) if library is not None else library_dir()
    name, number = split_version(str(model))
    if number is not None and (root / str(model)).is_dir():
        return root / str(model)
    if number == 1 and (root / name).is_dir():
        return root / name
    if number is None and MODEL_ID_PATTERN.match(name):
        promoted = promoted_version(root, name)
        if promoted is not None:
            from deepmed.zoo.versions import version_dir

            return version_dir(root, name, promoted)
    known = ", ".join(m.id for m in installed_models(root)) or "none"
    raise DeepMedError(f"{model}: no such model directory, and no model with this id in the library {root} "
                       f"(installed: {known})")


def new_model_dir(name: str, library: Path | None = None) -> Path:
    """A fresh, unused folder name in the library for a model called ``name`` (``name``, ``name-2``, ...)."""
    root = Path(library) if library is not None else library_dir(create=True)
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._") or "model"
    candidate, n = root / base, 2
    while candidate.exists():
        candidate, n = root / f"{base}-{n}", n + 1
    return candidate
