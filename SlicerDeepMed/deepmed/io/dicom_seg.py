"""DICOM Segmentation out and back: a label map (or overlapping masks) on a DICOM series' grid -> a DICOM SEG
(highdicom) that references the source instances, and a SEG -> the label map again on the series' grid.

Geometry is checked, not assumed: every source instance must lie on exactly one slice of the image's grid
(same orientation, rows and columns, position on the slice), and each frame is taken from the slice the
instance lies on; the reader places frames by their own Image Position (Patient). Needs highdicom (the
``dicom`` extra); imported only when a SEG is written or read.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from deepmed.errors import DeepMedError
from deepmed.io.image_io import SERIES_SEPARATOR, dicom_series
from deepmed.model.card import Label
from deepmed.model.terminology import Code

__all__ = ["SegmentInfo", "SegmentationContents", "check_sources", "read_dicom_seg", "source_instances",
           "write_dicom_seg"]

#: Type 2 attributes of the source's patient and study modules a SEG copies (empty allowed, absence not).
TYPE_2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                 "ReferringPhysicianName", "StudyID", "AccessionNumber")
#: Positions closer than this (in voxels) count as the same; orientations closer than this (cosines) agree.
POSITION_TOLERANCE = 1e-2
ORIENTATION_TOLERANCE = 1e-4


@dataclass(frozen=True)
class SegmentInfo:
    """One segment of a SEG: its number, label, coded category and type, and display colour (RGB) if any."""

    number: int
    label: str
    category: Code
    type: Code
    color: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class SegmentationContents:
    """What :func:`read_dicom_seg` restores: a map of segment numbers (0: none) on the reference grid, or,
    with overlapping segments, one binary mask per segment (``masks``: vector image), and the segments."""

    image: sitk.Image
    segments: tuple[SegmentInfo, ...]


def _highdicom():
    try:
        import highdicom
    except ImportError:
        raise DeepMedError("writing or reading DICOM SEG needs highdicom: pip install 'deepmed[dicom]'") from None
    return highdicom


def source_instances(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """The DICOM files of the one input series (a folder, ``folder#UID`` or a single DICOM file), or a one-line
    DeepMedError: a DICOM SEG can only reference DICOM sources."""
    if len(inputs) != 1:
        raise DeepMedError(f"DICOM SEG output (.dcm) needs one DICOM series as input, got {len(inputs)} inputs")
    text = str(inputs[0])
    uid = None
    if SERIES_SEPARATOR in text and not Path(text).exists():
        text, uid = text.rsplit(SERIES_SEPARATOR, 1)
    path = Path(text)
    if path.is_file():
        import pydicom

        if not pydicom.misc.is_dicom(path):
            raise DeepMedError(f"{path}: DICOM SEG output (.dcm) needs a DICOM series as input, got a non-DICOM file")
        return [path]
    series = dicom_series(path) if path.is_dir() else {}
    if not series:
        raise DeepMedError(f"{path}: DICOM SEG output (.dcm) needs a DICOM series as input; this holds none")
    if uid is None and len(series) == 1:
        uid = next(iter(series))
    if uid not in series:
        raise DeepMedError(f"{path}: choose one of its {len(series)} DICOM series as '{path}#UID'")
    return [Path(f) for f in series[uid]]


def check_sources(inputs: Sequence[str | os.PathLike]) -> list:
    """The headers of the one input DICOM series, checked to be referable by a SEG (and highdicom present)."""
    _highdicom()
    files = source_instances(inputs)
    return _read_headers(files)


def _read_headers(files: Sequence[Path]) -> list:
    import pydicom

    datasets = []
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception as exc:  # pydicom raises many kinds for a damaged file
            raise DeepMedError(f"{f}: cannot read the DICOM header ({exc})") from None
        _check_references(ds, f)
        datasets.append(ds)
    return datasets


def _check_references(ds, path: Path) -> None:
    """A SEG references its sources by their UIDs: a blank SOP Class / Instance UID is taken from the file's
    meta header (the same file's own record of them); a blank Study / Series / Frame of Reference UID (a series
    anonymised without UIDs) is refused in one line."""
    meta = getattr(ds, "file_meta", None)
    for key, fallback in (("SOPClassUID", "MediaStorageSOPClassUID"), ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
        if not str(ds.get(key) or "") and meta is not None and str(meta.get(fallback) or ""):
            setattr(ds, key, meta.get(fallback))
    for key in TYPE_2_COPIED:  # absent from some exports; present (empty allowed) in the SEG
        if key not in ds:
            setattr(ds, key, "")
    blank = [key for key in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
                             "FrameOfReferenceUID") if not str(ds.get(key) or "")]
    if blank:
        raise DeepMedError(f"{path}: no {', '.join(blank)} (anonymised without UIDs?); a DICOM SEG must reference "
                           "its source images by them")


def _slice_index(reference: sitk.Image, orientation, position, rows: int, columns: int, where: str) -> int:
    """The slice of ``reference`` that a plane (orientation cosines, top-left position) lies on, checked."""
    direction = np.array(reference.GetDirection()).reshape(3, 3)
    cosines = np.array([float(v) for v in orientation]).reshape(2, 3)
    if not np.allclose(cosines, direction[:, :2].T, atol=ORIENTATION_TOLERANCE):
        raise DeepMedError(f"{where}: orientation {cosines.ravel().round(5).tolist()} differs from the image's "
                           f"{direction[:, :2].T.ravel().round(5).tolist()}")
    if (columns, rows) != reference.GetSize()[:2]:
        raise DeepMedError(f"{where}: {rows} rows x {columns} columns, expected {reference.GetSize()[1]} x "
                           f"{reference.GetSize()[0]} (the image's)")
    index = np.array(reference.TransformPhysicalPointToContinuousIndex([float(v) for v in position]))
    slice_index = int(np.rint(index[2]))
    if np.abs(index - [0, 0, slice_index]).max() > POSITION_TOLERANCE or not 0 <= slice_index < reference.GetSize()[2]:
        raise DeepMedError(f"{where}: position {[round(float(v), 3) for v in position]} is not on a slice of the "
                           f"image's grid (continuous index {index.round(3).tolist()})")
    return slice_index


def _frames_of_sources(image: sitk.Image, datasets: list, files: Sequence[Path]) -> np.ndarray:
    """The image's slices in the order of the source instances (each instance's own slice, checked)."""
    seen: dict[int, Path] = {}
    order = []
    for ds, f in zip(datasets, files):
        where = f"{f}"
        for key in ("ImageOrientationPatient", "ImagePositionPatient"):
            if key not in ds:
                raise DeepMedError(f"{where}: no {key}; a DICOM SEG needs source images with a patient position")
        z = _slice_index(image, ds.ImageOrientationPatient, ds.ImagePositionPatient, ds.Rows, ds.Columns, where)
        if z in seen:
            raise DeepMedError(f"{where}: lies on slice {z} as {seen[z]} does (two instances at one position)")
        seen[z] = f
        order.append(z)
    if len(order) != image.GetSize()[2]:
        raise DeepMedError(f"{files[0].parent}: {len(order)} source instances for {image.GetSize()[2]} slices")
    array = sitk.GetArrayViewFromImage(image)  # (z, y, x[, component]): y rows, x columns as in DICOM
    return np.ascontiguousarray(array[order])


def _segment_numbers(array: np.ndarray, labels: Sequence[Label]) -> np.ndarray:
    """Label values -> segment numbers 1..N in the order of ``labels`` (values not among them: refused)."""
    lookup = np.zeros(int(max(array.max(initial=0), *(label.value for label in labels))) + 1, dtype=np.uint16)
    for number, label in enumerate(labels, start=1):
        lookup[label.value] = number
    unknown = sorted(set(np.unique(array).tolist()) - {0} - {label.value for label in labels})
    if unknown:
        raise DeepMedError(f"label map holds values {unknown} that no label of the model card names")
    return lookup[array]


def _description(hd, number: int, label: Label, algorithm):
    codes = label.codes
    color = None if label.color is None else hd.color.CIELabColor.from_rgb(*(int(c) for c in label.color))
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=label.name[:64],
        segmented_property_category=hd.sr.CodedConcept(codes.category.value, codes.category.scheme,
                                                       codes.category.meaning),
        segmented_property_type=hd.sr.CodedConcept(codes.type.value, codes.type.scheme, codes.type.meaning),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
        display_color=color)


def write_dicom_seg(image: sitk.Image, sources: Sequence[str | os.PathLike], labels: Sequence[Label],
                    path: str | os.PathLike, *, algorithm: str = "DeepMed", version: str = "unknown") -> Path:
    """Write ``image`` (a label map, or a vector image of overlapping binary masks, one component per label)
    lying on the grid of the DICOM series ``sources`` as a DICOM Segmentation at ``path``, atomically.

    ``labels``: the foreground labels (segments in this order; a label map's values must be among them);
    ``algorithm``/``version``: the model that made it (Segment Algorithm Name and version). Empty frames are left
    out; a label found nowhere is still a segment (without frames); an empty result keeps all its frames.
    """
    from pydicom.sr.codedict import codes

    from deepmed.utils.atomic import check_output_folder

    hd = _highdicom()
    labels = [label for label in labels if label.value != 0]
    if not labels:
        raise DeepMedError(f"{path}: a DICOM SEG needs labelled segments; the model card names no foreground label")
    files = source_instances(sources)
    datasets = _read_headers(files)
    frames = _frames_of_sources(image, datasets, files)
    if image.GetNumberOfComponentsPerPixel() > 1:
        if frames.shape[-1] != len(labels):
            raise DeepMedError(f"{path}: {frames.shape[-1]} masks for {len(labels)} labels")
        pixels = frames.astype(bool)
    else:
        pixels = _segment_numbers(frames if frames.dtype.kind in "iu" else np.rint(frames).astype(np.int64), labels)
    identification = hd.AlgorithmIdentificationSequence(name=algorithm[:64], version=version[:64],
                                                        family=codes.cid7162.ArtificialIntelligence)
    try:
        with warnings.catch_warnings():  # an empty result (nothing found) keeps its frames: said, not warned
            warnings.filterwarnings("ignore", message="Encoding an empty image")
            segmentation = _segmentation(hd, datasets, pixels, labels, identification, algorithm)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:  # highdicom's refusals of odd sources
        raise DeepMedError(f"{files[0].parent}: cannot make a DICOM SEG of this series ({exc})") from None
    path = check_output_folder(path)
    with tempfile.TemporaryDirectory(prefix=".deepmed-write-", dir=path.parent) as folder:  # atomic, umask kept
        segmentation.save_as(Path(folder) / path.name)
        os.replace(Path(folder) / path.name, path)
    return path


def _segmentation(hd, datasets, pixels, labels, identification, algorithm: str):
    from deepmed import __version__

    return hd.seg.Segmentation(
        source_images=datasets, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_description(hd, n, label, identification) for n, label in enumerate(labels, 1)],
        series_instance_uid=hd.UID(), series_number=900, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="DeepMed", manufacturer_model_name=algorithm[:64], software_versions=f"deepmed {__version__}",
        device_serial_number="none", content_label="DEEPMED", content_description=f"{algorithm} segmentation"[:64],
        series_description=f"{algorithm} segmentation"[:64])


def _segment_info(item) -> SegmentInfo:
    def code(sequence) -> Code:
        entry = sequence[0]
        return Code(entry.CodingSchemeDesignator, str(entry.CodeValue), entry.CodeMeaning)

    color = None
    if "RecommendedDisplayCIELabValue" in item:
        from highdicom.color import CIELabColor

        color = CIELabColor(*_lab_from_dicom(item.RecommendedDisplayCIELabValue)).to_rgb()
    return SegmentInfo(int(item.SegmentNumber), str(item.SegmentLabel),
                       code(item.SegmentedPropertyCategoryCodeSequence), code(item.SegmentedPropertyTypeCodeSequence),
                       None if color is None else tuple(color))


def _lab_from_dicom(values) -> tuple[float, float, float]:
    """DICOM's scaled CIELab integers (0..65535) -> L*, a*, b*."""
    l_star, a_star, b_star = (int(v) for v in values)
    return l_star * 100.0 / 65535.0, a_star * 255.0 / 65535.0 - 128.0, b_star * 255.0 / 65535.0 - 128.0


def read_dicom_seg(path: str | os.PathLike, reference: sitk.Image) -> SegmentationContents:
    """The segments of the DICOM SEG at ``path`` on ``reference``'s grid (e.g. the source series read with
    :func:`deepmed.io.image_io.read_image`): each frame placed by its own position and orientation (checked to
    lie on a slice). Non-overlapping segments give a map of segment numbers; overlapping ones a vector image."""
    import pydicom

    path = Path(path)
    try:
        seg = pydicom.dcmread(path)
    except Exception as exc:
        raise DeepMedError(f"{path}: cannot read DICOM ({exc})") from None
    if seg.get("Modality") != "SEG" or "SegmentSequence" not in seg:
        raise DeepMedError(f"{path}: not a DICOM Segmentation (Modality {seg.get('Modality')!r}, expected 'SEG')")
    segments = tuple(_segment_info(item) for item in seg.SegmentSequence)
    numbers = [s.number for s in segments]
    shared = seg.SharedFunctionalGroupsSequence[0]
    frames = seg.pixel_array.reshape(-1, int(seg.Rows), int(seg.Columns))
    masks = np.zeros((len(segments), *reversed(reference.GetSize())), dtype=bool)
    for number, (frame, group) in enumerate(zip(frames, seg.PerFrameFunctionalGroupsSequence), start=1):
        orientation = (group if "PlaneOrientationSequence" in group else shared).PlaneOrientationSequence[0]
        z = _slice_index(reference, orientation.ImageOrientationPatient,
                         group.PlanePositionSequence[0].ImagePositionPatient, int(seg.Rows), int(seg.Columns),
                         f"{path}: frame {number}")
        segment = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        masks[numbers.index(segment), z] |= frame.astype(bool)
    if (masks.sum(axis=0) > 1).any():
        image = sitk.GetImageFromArray(np.moveaxis(masks, 0, -1).astype(np.uint8), isVector=True)
    else:
        labels = np.zeros(masks.shape[1:], dtype=np.uint16)
        for index, number in enumerate(numbers):
            labels[masks[index]] = number
        image = sitk.GetImageFromArray(labels)
    image.CopyInformation(reference)
    return SegmentationContents(image, segments)
