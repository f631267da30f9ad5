"""Code shared by the DeepMed Slicer modules.

Everything here except the panel helpers is Qt-free and works on a bare MRML scene (PyPI ``slicer-core``),
so it is tested headless. The GUI process never imports torch: the engine runs in a background process.
"""

from __future__ import annotations
