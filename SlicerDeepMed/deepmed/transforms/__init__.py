"""Transforms: deterministic preprocessing (orient, resample, normalise) and MONAI augmentation/sampling."""
