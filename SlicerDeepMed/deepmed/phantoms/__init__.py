"""Synthetic cohorts with known truth (an MR-like organ + lesion cohort, a CT-like multi-organ cohort):
the demos', tests' and benchmarks' data, made on the fly, never downloaded."""
