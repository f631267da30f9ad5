"""DeepMed Run (module DeepMedRun): run a model on scene volumes; results land as the model card says."""

from __future__ import annotations
