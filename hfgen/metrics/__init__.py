"""Metrics: classification metrics, and sample-quality metrics (FID/KID/precision-recall) for generators."""
