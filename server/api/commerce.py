"""The Commerce API servicer. Each RPC hands a plain request to its surface; until a
surface lands, its RPC answers UNIMPLEMENTED and names the issue that brings it."""
from __future__ import annotations

from hanzo.v1 import commerce_pb2_grpc

from ..errors import Unimplemented
from ..latency import LatencyRecorder
from .edge import wrap_servicer

SERVICE = "hanzo.v1.Commerce"

# RPC -> the issue that implements it.
_PENDING = {
    "Recommend": 4,
    "Search": 5,
    "ScoreFraud": 6,
    "QuotePrice": 7,
    "PlanInventory": 7,
    "GetFeatures": 3,
    "IngestEvents": 3,
}


def _pending(rpc: str, issue: int):
    async def handler(request, context):
        raise Unimplemented(f"{rpc} is not implemented yet (issue #{issue})")

    handler.__name__ = rpc
    return handler


class CommerceServicer(commerce_pb2_grpc.CommerceServicer):
    def __init__(self, latency: LatencyRecorder) -> None:
        for rpc, issue in _PENDING.items():
            setattr(self, rpc, _pending(rpc, issue))
        wrap_servicer(self, SERVICE, list(_PENDING), latency)
