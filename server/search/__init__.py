"""Search: lexical retrieval over the catalog, query understanding, the neural re-ranker."""
