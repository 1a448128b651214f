"""Search training: evaluation, the reranker, and learning from search logs (position bias)."""
