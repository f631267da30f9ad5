"""DeepMed Data: assemble datasets from scene nodes or folders, check them, split them, export them."""

from __future__ import annotations
