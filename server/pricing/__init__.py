"""Pricing: the constrained profit-maximising price over a demand model."""
