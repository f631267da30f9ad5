"""DeepMed Segment: run a trained model on scene volumes; results land as segmentations or volumes."""

from __future__ import annotations
