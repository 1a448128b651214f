"""PlanInventory: InventoryRequest <-> the surface's plain query and answer."""
from __future__ import annotations

import math

from hanzo.v1 import commerce_pb2

from ..models.errors import InvalidArgument
from ..surfaces.inventory import InventoryPlanner, InventoryQuery
from .merchants import merchant_of

MAX_DAYS = 3660


def to_query(request: commerce_pb2.InventoryRequest) -> InventoryQuery:
    merchant_of(request)  # the catalogue is shared: the id is checked, nothing is scoped
    if not request.product_id:
        raise InvalidArgument("product_id", "is empty")
    if not 0 <= request.horizon_days <= MAX_DAYS:
        raise InvalidArgument("horizon_days",
                              f"must be in 0..{MAX_DAYS} (0: the whole plan), not {request.horizon_days}")
    if not 0 <= request.lead_time_days <= MAX_DAYS:
        raise InvalidArgument("lead_time_days", f"must be in 0..{MAX_DAYS} (0: the configured default), "
                                                f"not {request.lead_time_days}")
    if not math.isfinite(request.service_level) or not (request.service_level == 0 or
                                                        0.5 <= request.service_level < 1):
        raise InvalidArgument("service_level", f"must be in [0.5, 1) (0: the configured default), "
                                               f"not {request.service_level}")
    return InventoryQuery(request.product_id, request.location, request.horizon_days, request.service_level,
                          request.lead_time_days)


async def plan_inventory(planner: InventoryPlanner, request: commerce_pb2.InventoryRequest
                         ) -> commerce_pb2.InventoryResponse:
    answer = planner.plan(to_query(request))
    return commerce_pb2.InventoryResponse(
        forecast=answer.forecast.tolist(), forecast_low=answer.forecast_low.tolist(),
        forecast_high=answer.forecast_high.tolist(), safety_stock=answer.safety_stock,
        reorder_point=answer.reorder_point, model_version=answer.model_version, request_id=request.request_id)
