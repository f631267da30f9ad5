"""DeepMed Train: train models on a dataset in a background process, with live curves."""

from __future__ import annotations
