"""Retrieval: the ANN index over item embeddings (ann.py)."""
