"""Hanzo's server: transport (api), decisions (surfaces), features, models, retrieval."""
