"""Experiments: shoppers split into arms by a stable hash, and the statistics that judge a
candidate against production while they are watched."""
