"""Refine mode, Qt-free: points placed in Slicer (two Markups point lists, positive and negative) refine one
segment through an interactive model kept loaded in a warm worker (``DeepMedLib.WarmWorker``).

Geometry: points are in world RAS; the worker computes in the volume's local frame (its IJK-to-RAS, as for
ordinary inference), so each point is mapped from world into the volume's local frame (through the inverse of
its parent transforms, linear or not) and sent in LPS. The result lies on the volume's exact grid and goes
into a segment of a segmentation in the volume's frame, voxel for voxel.

The image goes to the worker as a file written once per volume (again only when its voxels change); the
segment as it was when refining started is the model's ``previous`` mask, so a result depends on the points
only: removing a point gives back the result before it was added.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer
import slicer.util
import vtk
from slicer.i18n import tr as _

from deepmed.interactive.clicks import Click, ClickSet
from DeepMedLib import ModelLibrary, SceneBridge
from DeepMedLib.Geometry import LPS_TO_RAS
from DeepMedLib.WarmWorker import WarmWorker


class RefineError(ValueError):
    """A refine that cannot be done as asked; the message names the node and the problem."""


@dataclass(frozen=True)
class RefineTarget:
    """What is refined: a segment (``label``, a label of the model's card) of ``segmentationNode`` on the grid
    of ``volumeNode``, from the points of ``positiveNode`` and ``negativeNode``."""

    volumeNode: object
    segmentationNode: object
    label: str
    positiveNode: object
    negativeNode: object


def clickMode(model):
    """The card's mode that takes clicks (None when the model is not interactive)."""
    if model is None:
        return None
    return next((mode for mode in model.modes if mode.inputs == "clicks"), None)


def worldToLocalLps(volumeNode, pointsWorld) -> list[tuple[float, float, float]]:
    """World RAS points -> the volume's local frame (before its parent transforms), in LPS."""
    toLocal = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(None, volumeNode.GetParentTransformNode(), toLocal)
    return [tuple(float(v) for v in LPS_TO_RAS @ np.array(toLocal.TransformPoint(list(point)), dtype=float))
            for point in pointsWorld]


def worldPoints(markupsNode) -> list[tuple[float, float, float]]:
    """The defined control points of a point list, in world RAS."""
    points = []
    for index in range(markupsNode.GetNumberOfControlPoints()):
        if markupsNode.GetNthControlPointPositionStatus(index) != markupsNode.PositionDefined:
            continue  # a point being placed (preview) is no click yet
        position = [0.0, 0.0, 0.0]
        markupsNode.GetNthControlPointPositionWorld(index, position)
        points.append(tuple(position))
    return points


def clickSetFor(target: RefineTarget) -> ClickSet:
    """The target's points as a ClickSet in the volume's local LPS frame."""
    clicks = []
    for node, positive in ((target.positiveNode, True), (target.negativeNode, False)):
        if node is None:
            continue
        for point in worldToLocalLps(target.volumeNode, worldPoints(node)):
            clicks.append(Click(point, positive, target.label))
    return ClickSet(tuple(clicks), "LPS")


class RefineLogic:
    """Talks to one warm worker; writes each volume once; applies results to segments.

    ``refine(target, onDone)`` sends one request at a time: points that change while one runs are sent
    together when it is answered (the newest points win, none is lost)."""

    def __init__(self, worker: WarmWorker | None = None, device: str = "auto"):
        self.worker = worker or WarmWorker(arguments=("--library", ModelLibrary.libraryFolder()))
        self.device = device
        self.workDir = Path(tempfile.mkdtemp(prefix="deepmed-refine-"))
        self.model = None
        self.openError: str | None = None       # why the last model could not be loaded in the worker
        self.volumeWrites = 0          # how many times a volume was written for the worker (tests, benchmark)
        self._volumeFiles: dict[str, tuple[Path, int]] = {}   # volume node ID -> (file, image data MTime)
        self._previous: dict[tuple, Path | None] = {}          # (volume, segmentation, label) -> mask at start
        self._waiting: tuple | None = None                     # (target, onDone) to send when idle
        self._requests = 0
        self._inFlight = False                 # a refine sent and not answered (the next one waits for it)
        self.lastRequest: dict | None = None    # the last refine request sent (what the worker was asked)
        self.lastMask = None                    # the last mask put into a segment (K, J, I), on the volume's grid

    # ---- the model -----------------------------------------------------------------------------------
    def open(self, model, onDone=None) -> None:
        """Load ``model`` (an InstalledModel) in the worker, once (a model already open is kept)."""
        if self.model is not None and self.model.id == model.id and self.worker.alive:
            return
        if clickMode(model) is None:
            raise RefineError(_("model {model}: its card has no mode that takes clicks").format(model=model.id))
        self.model, self.openError = model, None
        self.worker.request({"op": "open", "model": str(model.path), "device": self.device},
                            lambda response: self._onOpened(model, response, onDone))

    def _onOpened(self, model, response: dict, onDone) -> None:
        """A model that could not be loaded is opened again at the next refine; its error is the answer to the
        refines sent meanwhile."""
        if not response.get("ok") and self.model is model:
            self.model, self.openError = None, response.get("error", "?")
        if onDone is not None:
            onDone(response)

    def close(self) -> None:
        """Stop the worker and delete the temporary files."""
        self.model, self._waiting = None, None  # before stopping: the requests it answers start nothing new
        self.worker.stop()
        self._inFlight = False
        self._volumeFiles.clear()
        self._previous.clear()
        shutil.rmtree(self.workDir, ignore_errors=True)
        self.workDir = Path(tempfile.mkdtemp(prefix="deepmed-refine-"))

    def labelDict(self, label: str) -> dict:
        labels = [entry for entry in self.model.card.label_dicts() if entry["name"] == label]
        if not labels:
            names = ", ".join(entry["name"] for entry in self.model.card.label_dicts() if int(entry["value"]) != 0)
            raise RefineError(_("label {label}: the model refines {names}").format(label=label, names=names))
        return labels[0]

    # ---- files for the worker ------------------------------------------------------------------------
    def volumeFile(self, volumeNode) -> Path:
        """The volume's voxels in its local frame as a file: written once, again only when its voxels change."""
        imageData = volumeNode.GetImageData()
        stamp = imageData.GetMTime() if imageData is not None else -1
        known = self._volumeFiles.get(volumeNode.GetID())
        if known is not None and known[1] == stamp and known[0].is_file():
            return known[0]
        path = self.workDir / f"volume-{len(self._volumeFiles)}-{self.volumeWrites}.nrrd"
        sitk.WriteImage(SceneBridge.imageFromVolumeNode(volumeNode), str(path), useCompression=False)
        self.volumeWrites += 1
        self._volumeFiles[volumeNode.GetID()] = (path, stamp)
        return path

    def startRefining(self, target: RefineTarget) -> str:
        """Prepare ``target``: its segmentation in the volume's frame, its segment there (with the card's name
        and colour), and the segment as it is now kept as the model's ``previous`` mask; the segment's ID."""
        volume, segmentation = target.volumeNode, target.segmentationNode
        if segmentation.GetTransformNodeID() != volume.GetTransformNodeID():
            raise RefineError(_("segmentation {node}: it must be under the same transform as {volume} to be "
                                "refined on its grid").format(node=segmentation.GetName(), volume=volume.GetName()))
        if segmentation.GetDisplayNode() is None:
            segmentation.CreateDefaultDisplayNodes()
        if not segmentation.GetNodeReference(segmentation.GetReferenceImageGeometryReferenceRole()):
            segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        entry = self.labelDict(target.label)
        segmentId = segmentation.GetSegmentation().GetSegmentIdBySegmentName(target.label)
        key = self._key(target)
        if not segmentId:
            r, g, b = (c / 255.0 for c in entry.get("color", (128, 128, 128)))
            segmentId = segmentation.GetSegmentation().AddEmptySegment(target.label, target.label, [r, g, b])
            self._previous[key] = None
        elif key not in self._previous:
            mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume)
            self._previous[key] = self._writeLabelMap(np.asarray(mask) > 0, int(entry["value"]), volume,
                                                      f"previous-{len(self._previous)}")
        return segmentId

    def forgetStart(self, target: RefineTarget | None = None) -> None:
        """The next refine of ``target`` (all when None) starts from the segment as it is then."""
        if target is None:
            self._previous.clear()
        else:
            self._previous.pop(self._key(target), None)

    @staticmethod
    def _key(target: RefineTarget) -> tuple:
        return (target.volumeNode.GetID(), target.segmentationNode.GetID(), target.label)

    def _writeLabelMap(self, mask, value: int, volumeNode, name: str) -> Path | None:
        """``mask`` as a label map (the label's value inside) on the volume's grid; None when it is empty."""
        if not mask.any():
            return None
        image = sitk.GetImageFromArray(mask.astype(np.uint8) * np.uint8(value))
        image.CopyInformation(SceneBridge.imageFromVolumeNode(volumeNode))
        path = self.workDir / f"{name}.nrrd"
        sitk.WriteImage(image, str(path), useCompression=False)
        return path

    # ---- refining --------------------------------------------------------------------------------------
    def refine(self, target: RefineTarget, onDone) -> None:
        """Refine ``target`` from its points now; ``onDone(response)`` when the segment was updated (or the
        response says why not: ``{"ok": False, "error": ...}``)."""
        if self._inFlight:
            self._waiting = (target, onDone)
            return
        segmentId = self.startRefining(target)
        clicks = clickSetFor(target)
        self._requests += 1
        output = self.workDir / f"result-{self._requests}.nrrd"
        previous = self._previous.get(self._key(target))
        request = {"op": "refine", "image": str(self.volumeFile(target.volumeNode)), "clicks": clicks.to_dict(),
                   "previous": str(previous) if previous else None, "label": target.label, "output": str(output)}
        self.lastRequest = request
        self._inFlight = True
        self.worker.request(request, lambda response: self._onResponse(target, segmentId, response, onDone))

    def poll(self) -> None:
        self.worker.poll()

    def _onResponse(self, target: RefineTarget, segmentId: str, response: dict, onDone) -> None:
        self._inFlight = False
        if not response.get("ok") and self.openError:
            response = {**response, "error": _("the model could not be loaded: {error}").format(error=self.openError)}
        if response.get("ok"):
            try:
                self.applyResult(Path(response["output"]), target, segmentId)
            except (RefineError, SceneBridge.SceneBridgeError, RuntimeError, OSError) as error:
                response = {"ok": False, "error": str(error)}
        waiting, self._waiting = self._waiting, None
        onDone(response)
        if waiting is not None and self.model is not None:
            self.refine(*waiting)

    def applyResult(self, path: Path, target: RefineTarget, segmentId: str) -> None:
        """Put the worker's label map (on the volume's grid) into the segment, in place."""
        labels = sitk.ReadImage(str(path))
        path.unlink(missing_ok=True)
        SceneBridge.checkSameGrid(labels, target.volumeNode, what=_("refined {label}").format(label=target.label))
        array = sitk.GetArrayFromImage(labels)
        value = int(self.labelDict(target.label)["value"])
        mask = (array == value) if (array == value).any() else (array > 0)
        segmentation = target.segmentationNode
        if not segmentation.GetSegmentation().GetSegment(segmentId):
            raise RefineError(_("segment {label}: it was deleted while refining").format(label=target.label))
        slicer.util.updateSegmentBinaryLabelmapFromArray(mask.astype(np.uint8), segmentation, segmentId,
                                                         target.volumeNode)
        self.lastMask = mask
