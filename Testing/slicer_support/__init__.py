"""Test support for the Slicer modules: a headless MRML application (slicer-core) and a PySide6 harness."""
