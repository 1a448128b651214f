"""Pricing: the demand model, its fit from events, and its evaluation."""
