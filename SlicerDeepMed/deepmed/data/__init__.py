"""Datasets: manifests (MSD / nnU-Net dataset.json, nnU-Net raw folders, CSV, folder scans), checks, splits."""

from deepmed.data.manifest import Case, Dataset, DatasetInvalid

__all__ = ["Case", "Dataset", "DatasetInvalid"]
