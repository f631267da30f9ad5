"""Coded terminology of a label (what a DICOM Segmentation says a segment *is*): the card's optional
``labels[].terminology`` ({category, type}, each {scheme, value, meaning}), or the generic codes used without it.

Without ``terminology`` a label with a ``snomed`` code gets that code as its type in the generic category
"Anatomical Structure"; a label with neither is a "Tissue" of category "Tissue" (3D Slicer's generic default).
Importing this module never imports torch or pydicom.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepmed.errors import DeepMedError

__all__ = ["ANATOMICAL_STRUCTURE", "TISSUE", "Code", "Terminology", "label_terminology"]


@dataclass(frozen=True)
class Code:
    """One coded concept: coding scheme (``SCT`` for SNOMED CT, ``DCM``), code value and its meaning."""

    scheme: str
    value: str
    meaning: str

    @classmethod
    def from_dict(cls, entry: dict) -> Code:
        return cls(scheme=entry["scheme"], value=str(entry["value"]), meaning=entry["meaning"])

    def to_dict(self) -> dict:
        return {"scheme": self.scheme, "value": self.value, "meaning": self.meaning}


@dataclass(frozen=True)
class Terminology:
    """What a segment is: its property category (e.g. Anatomical Structure) and type (e.g. Liver)."""

    category: Code
    type: Code

    @classmethod
    def from_dict(cls, entry: dict) -> Terminology:
        return cls(category=Code.from_dict(entry["category"]), type=Code.from_dict(entry["type"]))

    def to_dict(self) -> dict:
        return {"category": self.category.to_dict(), "type": self.type.to_dict()}


#: DICOM CID 7150 (Segmentation Property Categories), SNOMED CT.
ANATOMICAL_STRUCTURE = Code("SCT", "91723000", "Anatomical Structure")
TISSUE = Code("SCT", "85756007", "Tissue")


def label_terminology(name: str, snomed: str | None = None, terminology: Terminology | None = None) -> Terminology:
    """The codes of one label: its card ``terminology``, else its ``snomed`` code (as type, category Anatomical
    Structure), else the generic Tissue/Tissue."""
    if terminology is not None:
        return terminology
    if snomed is not None:
        return Terminology(ANATOMICAL_STRUCTURE, Code("SCT", snomed, name))
    return Terminology(TISSUE, TISSUE)


def check_snomed_agrees(where: str, snomed: str | None, terminology: Terminology | None) -> None:
    """A label's ``snomed`` and its ``terminology`` type, when both are SNOMED CT, must be the same code."""
    if snomed is None or terminology is None or terminology.type.scheme != "SCT":
        return
    if terminology.type.value != snomed:
        raise DeepMedError(f"{where}: snomed {snomed} differs from terminology.type {terminology.type.value} "
                           "(expected the same SNOMED CT code, or one of them)")
