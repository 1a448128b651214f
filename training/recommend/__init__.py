"""Recommendation: evaluation data and splits, metrics, the baselines to beat, and (to come)
the two-tower model."""
