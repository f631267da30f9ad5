"""Read and write medical images with SimpleITK: NIfTI, NRRD, MetaImage, DICOM series, 4D as channels."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from deepmed.errors import DeepMedError
from deepmed.io.nifti_integrity import nifti_problem
from deepmed.utils.atomic import check_output_folder

#: File endings read and written (longest first so that ``.nii.gz`` wins over ``.gz``).
IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
WRITE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
INTEGER_PIXEL_TYPES = (sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16, sitk.sitkUInt32, sitk.sitkInt32)
#: ``folder#SERIES_UID`` selects one DICOM series in a folder holding several.
SERIES_SEPARATOR = "#"


def strip_image_extension(name: str) -> str:
    """``'case_001_0000.nii.gz'`` -> ``'case_001_0000'``."""
    lower = name.lower()
    for ext in IMAGE_EXTENSIONS:
        if lower.endswith(ext):
            return name[: -len(ext)]
    return name


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_EXTENSIONS)


def dicom_series(folder: str | os.PathLike) -> dict[str, list[str]]:
    """Map each DICOM series UID found in ``folder`` to its sorted file names."""
    reader = sitk.ImageSeriesReader()
    return {uid: list(reader.GetGDCMSeriesFileNames(str(folder), uid)) for uid in reader.GetGDCMSeriesIDs(str(folder))}


def _series_description(files: list[str]) -> str:
    reader = sitk.ImageFileReader()
    reader.SetFileName(files[0])
    try:
        reader.ReadImageInformation()
        modality = reader.GetMetaData("0008|0060").strip() if reader.HasMetaDataKey("0008|0060") else "?"
        desc = reader.GetMetaData("0008|103e").strip() if reader.HasMetaDataKey("0008|103e") else ""
    except RuntimeError:
        return f"{len(files)} files"
    return f"{modality} '{desc}', {len(files)} files"


def _read_dicom_folder(folder: Path, series_uid: str | None) -> sitk.Image:
    series = dicom_series(folder)
    if not series:
        raise DeepMedError(f"{folder}: folder holds no DICOM series (and is not an image file)")
    if series_uid is None:
        if len(series) > 1:
            listing = "; ".join(f"{uid} ({_series_description(f)})" for uid, f in series.items())
            raise DeepMedError(
                f"{folder}: {len(series)} DICOM series found, choose one as '{folder}{SERIES_SEPARATOR}UID': {listing}"
            )
        series_uid = next(iter(series))
    if series_uid not in series:
        raise DeepMedError(f"{folder}: no DICOM series {series_uid}; found: {', '.join(series)}")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(series[series_uid])
    return reader.Execute()


def read_image(path: str | os.PathLike, series_uid: str | None = None) -> sitk.Image:
    """Read an image file or a DICOM series folder (``folder#UID`` picks one of several series).

    Raises:
        DeepMedError: naming the file and the problem (missing, unreadable, truncated).
    """
    text = str(path)
    if series_uid is None and SERIES_SEPARATOR in text and not Path(text).exists():
        text, series_uid = text.rsplit(SERIES_SEPARATOR, 1)
    p = Path(text)
    if not p.exists():
        raise DeepMedError(f"{p}: file not found")
    try:
        if p.is_dir():
            return _read_dicom_folder(p, series_uid)
        if p.name.lower().endswith((".nii", ".nii.gz")):
            problem = nifti_problem(p)
            if problem:
                raise DeepMedError(f"{p}: cannot read image ({problem})")
        return sitk.ReadImage(str(p))
    except RuntimeError as exc:
        raise DeepMedError(f"{p}: cannot read image ({_itk_reason(exc)})") from None


def _itk_reason(exc: Exception) -> str:
    """Reduce a multi-line ITK exception to its most telling line."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for line in lines:
        for marker in ("Description:", "ERROR:"):
            if marker in line:
                return line.split(marker, 1)[1].strip()
    return lines[-1] if lines else "unknown error"


def split_channels(image: sitk.Image) -> list[sitk.Image]:
    """Split a multi-component (vector) image or a 4D image into 3D single-channel images."""
    if image.GetNumberOfComponentsPerPixel() > 1:
        return [sitk.VectorIndexSelectionCast(image, i) for i in range(image.GetNumberOfComponentsPerPixel())]
    if image.GetDimension() == 4:
        size = list(image.GetSize())
        channels = []
        for t in range(size[3]):
            extractor = sitk.ExtractImageFilter()
            extractor.SetSize(size[:3] + [0])
            extractor.SetIndex([0, 0, 0, t])
            channels.append(extractor.Execute(image))
        return channels
    return [image]


def read_channels(paths: str | os.PathLike | list) -> list[sitk.Image]:
    """Read one or more files as the channels of one case (4D / multi-component files expand)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    channels: list[sitk.Image] = []
    for p in paths:
        channels.extend(split_channels(read_image(p)))
    return channels


def label_dtype(array: np.ndarray) -> type:
    """Smallest integer type that holds the label values in ``array``."""
    lo, hi = (int(array.min()), int(array.max())) if array.size else (0, 0)
    if lo >= 0:
        return np.uint8 if hi < 256 else np.uint16 if hi < 65536 else np.uint32
    return np.int16 if lo >= -32768 and hi < 32768 else np.int32


def write_image(
    image: sitk.Image,
    path: str | os.PathLike,
    *,
    reference: sitk.Image | None = None,
    label: bool = False,
    compress: bool = True,
) -> Path:
    """Write ``image`` atomically; with ``reference``, its grid is checked to match exactly.

    Args:
        image: the image to write.
        path: output file; its extension picks the format (.nii.gz, .nii, .nrrd, .nhdr, .mha, .mhd).
        reference: when given, ``image`` must lie on this grid (outputs are written on the input's grid).
        label: write as an integer label map (values are rounded, smallest integer type chosen).
        compress: compress the pixel data where the format allows.
    """
    from deepmed.io.geometry import grid_differences

    path = check_output_folder(path)
    if not path.name.lower().endswith(WRITE_EXTENSIONS):
        raise DeepMedError(f"{path}: unsupported output format, expected one of {', '.join(WRITE_EXTENSIONS)}")
    if reference is not None:
        problems = grid_differences(image, reference)
        if problems:
            raise DeepMedError(f"{path}: output is not on the input grid: {'; '.join(problems)}")
    if label and image.GetPixelID() not in INTEGER_PIXEL_TYPES:
        array = np.rint(sitk.GetArrayViewFromImage(image))
        labels = sitk.GetImageFromArray(array.astype(label_dtype(array)))
        labels.CopyInformation(image)
        image = labels
    _write_atomically(image, path, compress)
    return path


def _write_atomically(image: sitk.Image, path: Path, compress: bool) -> None:
    """Write into a private folder beside ``path``, then move the file(s) into place.

    Header + data formats (.nhdr, .mhd) produce two files; the data file moves first, the header last.
    """
    with tempfile.TemporaryDirectory(prefix=".deepmed-write-", dir=path.parent) as tmp_dir:
        tmp_path = Path(tmp_dir) / path.name
        sitk.WriteImage(image, str(tmp_path), compress)
        produced = sorted(Path(tmp_dir).iterdir(), key=lambda f: f.name == path.name)
        for f in produced:
            os.replace(f, path.parent / f.name)
