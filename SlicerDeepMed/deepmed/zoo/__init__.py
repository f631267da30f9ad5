"""Model zoo: the per-user model library (trained and installed models); catalogues and packages build on it.

Importing this package never imports torch: the Slicer panels list models from the GUI process.
"""
