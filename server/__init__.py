"""Hanzo's server: transport (api), decisions (surfaces), features, models, retrieval."""
import os

# Snapshots are written by a forked child (features/snapshot_child) that never calls gRPC.
# gRPC's fork handlers would only try to pause its threads around each fork and log that they
# could not; set before grpc is first imported, and a caller's own setting wins.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
