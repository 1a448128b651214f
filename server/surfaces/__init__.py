"""The decisions: one module per surface, written against plain numpy and dataclasses (never
grpc)."""
