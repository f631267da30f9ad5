"""The dataset the user is working on, shared between panels: DeepMed Data announces what it exported or
loaded, DeepMed Train offers it (a pure-Python signal; no Qt)."""

from __future__ import annotations

from DeepMedLib.Signal import Signal

#: emitted with the manifest path when a dataset was exported (or loaded) and checked
datasetReady = Signal("str")
