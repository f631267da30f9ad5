"""Interactive (click-guided) segmentation: clicks, simulated clicks, guidance maps and a warm session."""
