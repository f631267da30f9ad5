"""DeepMed Review (module DeepMedReview): rank the pool, correct, accept, improve the model."""

from __future__ import annotations
