"""PlanInventory: one product's forecast at one location from the nightly plan
(server/inventory/plan.py), with the safety stock and reorder point for the service level and
lead time the caller asks. The plan file is reloaded when it changes on disk, so the nightly
`hanzo plan-inventory` run needs no restart."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..models.errors import InvalidArgument, NotFound
from ..inventory.plan import InventoryPlan
from ..inventory.policy import daily, reorder_point
from .reloading import ReloadingFile


@dataclass
class InventoryConfig:
    plan: str = ""  # the plan file `hanzo plan-inventory --plan` writes; empty: PlanInventory unavailable
    default_location: str = "ALL"  # the location a request without one asks about
    default_service_level: float = 0.95
    default_lead_time_days: int = 7

    def __post_init__(self) -> None:
        if not 0.5 <= self.default_service_level < 1:
            raise ValueError(f"[inventory] default_service_level must be in [0.5, 1), not {self.default_service_level}")
        if self.default_lead_time_days < 1:
            raise ValueError(f"[inventory] default_lead_time_days must be >= 1, not {self.default_lead_time_days}")


@dataclass
class InventoryQuery:
    product_id: str
    location: str = ""
    horizon_days: int = 0
    service_level: float = 0.0
    lead_time_days: int = 0


@dataclass
class InventoryAnswer:
    forecast: np.ndarray
    forecast_low: np.ndarray
    forecast_high: np.ndarray
    safety_stock: float
    reorder_point: float
    model_version: str


class InventoryPlanner:
    def __init__(self, config: InventoryConfig | None = None) -> None:
        self.config = config or InventoryConfig()
        self._plan = ReloadingFile(self.config.plan, InventoryPlan.load, "inventory plan",
                                   "run `hanzo plan-inventory --plan FILE` and set [inventory] plan")

    def plan(self, query: InventoryQuery) -> InventoryAnswer:
        plan = self._plan.current()
        location = query.location or self.config.default_location
        row = plan.row(query.product_id, location)
        if row is None:
            raise NotFound(f"no plan for product {query.product_id!r} at location {location!r}")
        mean, low, high = daily(plan.mean[row], plan.low[row], plan.high[row], int(plan.step_days[row]))
        days = query.horizon_days or len(mean)
        if days > len(mean):
            raise InvalidArgument("horizon_days", f"{query.horizon_days} days is past the plan's {len(mean)} days")
        lead = query.lead_time_days or self.config.default_lead_time_days
        if lead > len(mean):
            raise InvalidArgument("lead_time_days", f"{lead} days is past the plan's {len(mean)} days")
        service = query.service_level or self.config.default_service_level
        if not 0.5 <= service < 1:
            raise InvalidArgument("service_level", f"must be in [0.5, 1), not {service}")
        point = reorder_point(mean, low, high, lead, service)
        return InventoryAnswer(mean[:days], low[:days], high[:days], point.safety_stock, point.reorder_point,
                               plan.version)
