"""Datasets from the scene or from folders (Qt-free, scriptable).

    logic = DataLogic()
    cases = [SceneCase("p1", [t1, flair], segmentation1), SceneCase("p2", [t1b, flairb], labelmap2)]
    manifest = logic.exportSceneDataset(cases, "/data/brain", name="brain", channelNames=["T1", "FLAIR"])

Exports follow the nnU-Net raw layout (``imagesTr/ID_0000.nii.gz``, ``labelsTr/ID.nii.gz``) with a
``dataset.json`` manifest; label values come from segment names, shared by every case. Unlabelled cases
for review go to the manifest's ``pool`` (images in ``imagesPool/``); ``acceptLabel`` stores a corrected
segmentation as a case's label (``deepmed.data.labels.add_label``: every version kept, provenance recorded).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import SimpleITK as sitk
from slicer.i18n import tr as _

from deepmed.data.labels import add_label, add_pool, pool_cases_from_paths
from deepmed.data.manifest import Case, Dataset
from deepmed.data.provenance import LabelProvenance
from deepmed.data.scan import ScanPatterns, scan_folder
from deepmed.data.split import add_splits
from deepmed.errors import DeepMedError
from deepmed.io.image_io import write_image
from DeepMedLib import InputFrames, SceneBridge
from DeepMedLib.BackgroundJob import BackgroundJob
from DeepMedLib.EngineCommand import EngineRunner
from DeepMedLib.JobHandle import JobHandle

POOL_IMAGES = "imagesPool"  # beside the manifest: images of the unlabelled cases added from the scene


class DataError(ValueError):
    pass


@dataclass
class SceneCase:
    """One subject in the scene: its volumes (one per channel) and an optional segmentation/label map;
    ``pool``: an unlabelled case waiting for review (its label node, if any, is not used)."""

    id: str
    volumes: list
    labelNode: object = None
    problems: list = field(default_factory=list)
    pool: bool = False


class CheckRun(JobHandle):
    """``deepmed dataset check`` in the background; ``report`` (dict) once finished (what ``wait`` returns)."""

    def __init__(self, job: BackgroundJob, reportPath: Path):
        self.reportPath, self.report = reportPath, None
        super().__init__(job)

    def waitValue(self) -> dict | None:
        return self.report

    def _onJobFinished(self, result) -> None:
        if self.reportPath.is_file():
            self.report = json.loads(self.reportPath.read_text(encoding="utf-8"))
        elif not result.succeeded:
            self.report = {"ok": False, "problems": [result.errorMessage], "cases": [], "fingerprint": {},
                           "suggested": {}}
        shutil.rmtree(self.reportPath.parent, ignore_errors=True)


class DataLogic:
    """``runner``: makes the worker processes (``EngineRunner``); tests may pass another."""

    def __init__(self, runner: EngineRunner | None = None):
        self.runner = runner or EngineRunner()

    # ---- from the scene -------------------------------------------------------------------------
    def exportSceneDataset(self, cases: list[SceneCase], folder, name: str = "dataset",
                           channelNames: list[str] | None = None, description: str = "") -> Path:
        """Write the cases as NIfTI files plus ``dataset.json``; returns the manifest's path.

        The folder must not exist or be empty (nothing of the user's is overwritten); it is written
        under a temporary name and renamed when complete.
        """
        folder = Path(folder)
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise DataError(_("{folder}: already exists and is not empty; choose a new folder").format(folder=folder))
        if not cases:
            raise DataError(_("no cases to export"))
        channels = len(cases[0].volumes)
        channelNames = list(channelNames or [f"channel_{i}" for i in range(channels)])
        problems = self.sceneProblems(cases, channelNames)
        if problems:
            raise DataError("; ".join(problems))
        parent = folder.parent if folder.parent.is_dir() else None
        partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=parent))
        try:
            dataset = self._writeCases(cases, partial, name, channelNames, description)
            dataset.save(partial / "dataset.json")
            if folder.exists():
                folder.rmdir()
            os.replace(partial, folder)
        except Exception:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return folder / "dataset.json"

    @staticmethod
    def sceneProblems(cases: list[SceneCase], channelNames: list[str]) -> list[str]:
        """Everything wrong with the scene cases at once (one line each)."""
        problems, seen = [], set()
        for case in cases:
            if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", case.id or ""):
                problems.append(_("case {case}: ids may hold letters, digits, '.', '_' and '-'").format(
                    case=repr(case.id)))
            if case.id in seen:
                problems.append(_("case {case}: id used twice").format(case=case.id))
            seen.add(case.id)
            if len(case.volumes) != len(channelNames) or any(v is None for v in case.volumes):
                problems.append(_("case {case}: expected {count} volume(s) ({channels}), got {got}").format(
                    case=case.id, count=len(channelNames), channels=", ".join(channelNames),
                    got=len([v for v in case.volumes if v is not None])))
        return problems

    def _writeCases(self, cases, folder: Path, name, channelNames, description) -> Dataset:
        (folder / "imagesTr").mkdir()
        nameToValue: dict[str, int] = {}
        training, test, pool = [], [], []
        for case in cases:
            if case.pool:
                pool.append(Case(case.id, self._writeVolumes(case, folder / POOL_IMAGES)))
                continue
            images = self._writeVolumes(case, folder / "imagesTr")
            label = None
            if case.labelNode is not None:
                labelImage, nameToValue = self._labelImage(case, nameToValue)
                (folder / "labelsTr").mkdir(exist_ok=True)
                label = folder / "labelsTr" / f"{case.id}.nii.gz"
                sitk.WriteImage(labelImage, str(label), useCompression=True)
            (training if label is not None else test).append(Case(case.id, images, label))
        labels = {"background": 0, **dict(sorted(nameToValue.items(), key=lambda item: item[1]))}
        return Dataset(name=name, description=description,
                       channel_names={str(i): n for i, n in enumerate(channelNames)},
                       labels=labels if nameToValue else {}, training=training, test=test, pool=pool)

    @staticmethod
    def _writeVolumes(case: SceneCase, folder: Path) -> list[Path]:
        """The case's channels as ``folder/ID_000C.nii.gz`` (never replacing a file), all in the first one's
        frame (channels under other parent transforms are resampled)."""
        folder.mkdir(exist_ok=True)
        paths = [folder / f"{case.id}_{channel:04d}.nii.gz" for channel in range(len(case.volumes))]
        existing = [p for p in paths if p.exists()]
        if existing:
            raise DataError(_("{path}: already exists; give the case another id").format(path=existing[0]))
        for path, image in zip(paths, InputFrames.inputImages(case.volumes)):
            write_image(image, path)
        return paths

    @staticmethod
    def _labelImage(case: SceneCase, nameToValue: dict):
        node, reference = case.labelNode, case.volumes[0]
        if node.IsA("vtkMRMLSegmentationNode"):
            return SceneBridge.labelImageFromSegmentation(node, reference, nameToValue)
        image, names = SceneBridge.labelImageFromLabelmapNode(node)
        SceneBridge.checkSameGrid(image, reference, what=f"label map {node.GetName()}")
        for labelName, value in names.items():
            if nameToValue.get(labelName, value) != value:
                raise DataError(_("case {case}: label map {node} gives '{label}' value {value}, earlier cases gave "
                                  "{earlier}").format(case=case.id, node=node.GetName(), label=labelName, value=value,
                                                      earlier=nameToValue[labelName]))
            nameToValue[labelName] = value
        return image, nameToValue

    # ---- the pool of unlabelled cases, and accepting a corrected label --------------------------------
    def addScenePool(self, manifest, cases: list[SceneCase]) -> list[str]:
        """Write the cases' volumes to ``imagesPool/`` beside ``manifest`` and add them to its pool; the ids."""
        dataset = Dataset.load(manifest)
        channelNames = list(dataset.channel_names.values()) or [f"channel_{i}" for i in range(len(cases[0].volumes))]
        problems = self.sceneProblems(cases, channelNames)
        problems += [_("case {case}: id already used in {manifest}").format(case=c.id, manifest=manifest)
                     for c in cases if c.id in {k.id for k in dataset.all_cases + dataset.pool}]
        if problems:
            raise DataError("; ".join(problems))
        folder = Path(manifest).parent / POOL_IMAGES
        written = [Case(case.id, self._writeVolumes(case, folder)) for case in cases]
        return self._engine(add_pool, manifest, written)

    def addFolderPool(self, manifest, paths, imagePatterns: list[str] | None = None):
        """Add the images in files/folders (channels paired by file-name patterns) to the pool, in place:
        returns (ids added, warnings)."""
        cases, warnings = self._engine(pool_cases_from_paths, [paths] if isinstance(paths, (str, Path)) else paths,
                                       imagePatterns)
        return self._engine(add_pool, manifest, cases), warnings

    def acceptLabel(self, manifestPath, caseId: str, labelNode, referenceVolumeNode, provenance=None) -> Path:
        """Save a (corrected) segmentation or label map as the label of case ``caseId``: exported on
        ``referenceVolumeNode``'s grid (the case's image as loaded; parent transforms taken into account),
        segments matched to the manifest's labels by name. A pool case moves to training; an earlier label is
        kept. ``provenance``: a ``LabelProvenance``, or the proposing model as "name@version", or None.
        Returns the new label file."""
        if labelNode is None or referenceVolumeNode is None:
            raise DataError(_("choose the corrected segmentation and the case's image volume"))
        labels = Dataset.load(manifestPath).labels
        if labelNode.IsA("vtkMRMLSegmentationNode"):
            unknown = [n for n in SceneBridge.segmentNames(labelNode) if n not in labels]
            if unknown:
                raise DataError(_("{node}: segment(s) {names} are not labels of {manifest} (labels: {known})").format(
                    node=labelNode.GetName(), names=", ".join(unknown), manifest=manifestPath,
                    known=", ".join(n for n, v in labels.items() if v != 0)))
            image, _names = SceneBridge.labelImageFromSegmentation(labelNode, referenceVolumeNode, labels)
        else:
            image, _names = SceneBridge.labelImageFromLabelmapNode(labelNode)
            SceneBridge.checkSameGrid(image, referenceVolumeNode, what=f"label map {labelNode.GetName()}")
        if not isinstance(provenance, LabelProvenance):
            provenance = LabelProvenance.from_model(provenance)
        return self._engine(add_label, manifestPath, caseId, image, provenance)

    @staticmethod
    def _engine(function, *args):
        """Call an engine function; its one-line errors become DataError (shown in the panel)."""
        try:
            return function(*args)
        except DeepMedError as exc:
            raise DataError(str(exc)) from None

    # ---- from folders ----------------------------------------------------------------------------
    def scanFolder(self, folder, imagePatterns: list[str], labelPattern: str | None = None,
                   channelNames: list[str] | None = None, removeFromId: str | None = None):
        """A Dataset from a folder scan (patterns as in ``deepmed dataset scan``); returns (dataset, warnings)."""
        patterns = ScanPatterns(images=list(imagePatterns), label=labelPattern or None,
                                remove_from_id=removeFromId or None)
        dataset, warnings = scan_folder(Path(folder), patterns)
        if channelNames:
            dataset.channel_names = {str(i): n for i, n in enumerate(channelNames)}
        return dataset, warnings

    def loadManifest(self, path) -> Dataset:
        return Dataset.load(path)

    def saveManifest(self, dataset: Dataset, path, overwrite: bool = False) -> Path:
        path = Path(path)
        if path.exists() and not overwrite:
            raise DataError(_("{path}: already exists; choose another file name").format(path=path))
        return dataset.save(path)

    def split(self, manifest, fractions=(0.7, 0.15, 0.15), seed: int = 0) -> dict:
        """Store one train/validation/test split in the manifest; returns it (ids per part)."""
        dataset = Dataset.load(manifest)
        if Path(manifest).suffix.lower() != ".json":
            raise DataError(_("{manifest}: splits are stored in a JSON manifest; export or save it as .json "
                              "first").format(manifest=manifest))
        add_splits(dataset, fractions=tuple(fractions), seed=seed)
        dataset.save(manifest)
        return dataset.splits[0]

    def check(self, manifest) -> CheckRun:
        """Validate every case in a background process (reading images takes a while)."""
        reportPath = Path(tempfile.mkdtemp(prefix="deepmed-check-")) / "report.json"
        job = self.runner.job("dataset check", "dataset", "check", manifest, "--report", reportPath)
        run = CheckRun(job, reportPath)
        job.start()
        return run
