"""``deepmed infer DICOM_SERIES -o result.dcm``: a prediction written as a DICOM Segmentation that references
its source instances. Decided here from the output's ending; checked before any work (a label output, a DICOM
series input, highdicom installed), written by :mod:`deepmed.io.dicom_seg`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from deepmed.errors import DeepMedError
from deepmed.model.card import Label, ModelCard

DICOM_SUFFIX = ".dcm"
#: Output kinds a DICOM SEG can hold (one segment per label).
SEG_KINDS = ("label_map", "overlapping_masks")


def wants_dicom_seg(path: str | Path) -> bool:
    return str(path).lower().endswith(DICOM_SUFFIX)


def check_dicom_seg_job(output_kind: str, inputs: Sequence[Path], output: Path) -> None:
    """One-line DeepMedError, before any work, when ``output`` (``.dcm``) cannot be a DICOM SEG of this job."""
    from deepmed.io.dicom_seg import check_sources

    if output_kind not in SEG_KINDS:
        raise DeepMedError(f"{output}: a DICOM SEG holds segments; this model's output is a {output_kind} "
                           "(write .nii.gz, .nrrd or .mha instead)")
    check_sources(inputs)


def seg_labels(card: ModelCard, image: sitk.Image) -> list[Label]:
    """The segments: the card's foreground labels; for a card without any, one generic label per value found."""
    if card.foreground_labels:
        return list(card.foreground_labels)
    if image.GetNumberOfComponentsPerPixel() > 1:
        return [Label(index, f"label {index}") for index in range(1, image.GetNumberOfComponentsPerPixel() + 1)]
    values = np.unique(sitk.GetArrayViewFromImage(image))
    return [Label(int(v), f"label {int(v)}") for v in values if v != 0]


def write_seg_prediction(image: sitk.Image, card: ModelCard, sources: Sequence[Path], path: Path,
                         model_name: str) -> Path:
    """Write one case's label output as a DICOM SEG referencing ``sources`` (its DICOM series)."""
    from deepmed.io.dicom_seg import write_dicom_seg

    algorithm = card.title or card.id or model_name
    return write_dicom_seg(image, sources, seg_labels(card, image), path, algorithm=algorithm,
                           version=card.version or "unversioned")
