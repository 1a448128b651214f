"""QuotePrice: the constrained profit-maximising price for one product now, from the demand
model `hanzo train pricing` writes (one file reloaded when it changes on disk, or a folder of
versions under a production pointer whose candidate gets shadow copies), the catalogue's cost,
price and stock, and the product's traffic from the feature store."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..experiments.quotes import QuoteJoin
from ..models.errors import FailedPrecondition, InvalidArgument, NotFound
from ..models.file_versions import FileModelVersions, FileVersion
from ..features.service import FeatureService
from ..pricing.demand_model import DEMAND_FILE, DemandModel
from ..pricing.optimize import PriceRules
from ..pricing.quote import ProductNow, Quote, quote
from .reloading import ReloadingFile
from .shadow import Shadow

TRAFFIC = ("product_views_24h", "product_views_7d", "product_units_sold_30d")


@dataclass
class PricingConfig:
    # the demand model `hanzo train pricing --out` writes: a file ending .npz, or a folder of
    # versions (<n>/demand.npz) under a production pointer; empty: QuotePrice unavailable
    model: str = ""
    min_margin: float = 0.10  # the margin floor: price >= (1 + min_margin) x cost
    max_change: float = 0.15  # price consistency: at most this share from the current price per quote
    parity_slack: float = 0.0  # competitor parity: at most this above the dearest competitor's price
    restock_days: float = 7.0  # how long today's stock has to last (a request's days_to_restock overrides)
    # how far past the prices the demand curve was fitted on the target may go (0.5: 50%),
    # chosen on the closed-loop replay's tuning seed (docs/results.md, pricing)
    extrapolation: float = 0.5
    attribution_hours: float = 24.0  # a purchase at the quoted price counts for the quote this long after it

    def __post_init__(self) -> None:
        if not 0 < self.attribution_hours <= 24 * 90:
            raise ValueError(f"[pricing] attribution_hours must be in (0, 2160], not {self.attribution_hours}")
        for name in ("min_margin", "parity_slack"):
            if not 0 <= getattr(self, name) < 100:
                raise ValueError(f"[pricing] {name} must be in [0, 100), not {getattr(self, name)}")
        if not 0 < self.max_change <= 1:
            raise ValueError(f"[pricing] max_change must be in (0, 1], not {self.max_change}")
        if not 0 <= self.extrapolation <= 10:
            raise ValueError(f"[pricing] extrapolation must be in [0, 10], not {self.extrapolation}")
        if not 0 < self.restock_days <= 365:
            raise ValueError(f"[pricing] restock_days must be in (0, 365], not {self.restock_days}")

    @property
    def rules(self) -> PriceRules:
        return PriceRules(self.min_margin, self.max_change, self.parity_slack)


@dataclass
class PriceQuery:
    product_id: str
    competitor_prices: list[float] = field(default_factory=list)
    location: str = ""  # stock at this location only (default: all locations together)
    cost: float | None = None  # overrides the catalogue's
    current_price: float | None = None  # overrides the catalogue's
    stock: float | None = None  # overrides the catalogue's
    days_to_restock: float | None = None
    model_version: int | None = None  # a loaded version by number (a candidate); None: production


@dataclass
class PriceAnswer:
    quote: Quote
    model_version: str


class PriceQuoter:
    def __init__(self, features: FeatureService, config: PricingConfig | None = None,
                 clock=time.time, shadow: Shadow | None = None) -> None:
        self.features = features
        self.config = config or PricingConfig()
        self._rules = self.config.rules
        self.shadow = shadow
        # a file ending .npz is read again when it changes; anything else is a folder of
        # versions under a production pointer, promoted and rolled back like a repository model
        self.versions: FileModelVersions[DemandModel] | None = None
        self._file: ReloadingFile[DemandModel] | None = None
        if not self.config.model or self.config.model.endswith(".npz"):
            self._file = ReloadingFile(self.config.model, DemandModel.load, "demand model",
                                       "run `hanzo train pricing --out FILE` and set [pricing] model")
        else:
            self.versions = FileModelVersions(Path(self.config.model), DEMAND_FILE, DemandModel.load, "demand model",
                                              "run `hanzo train pricing --out FOLDER` or `hanzo retrain pricing`")
        self._clock = clock
        # quotes joined to the purchases at their price (the server feeds it the applied events)
        self.outcomes = QuoteJoin(int(self.config.attribution_hours * 3_600_000))

    def _model(self, version: int | None) -> tuple[DemandModel, str, int]:
        """The demand model a query gets, its version as answered, and its version number (0
        for a single file)."""
        if self.versions is None:
            if version is not None:
                raise InvalidArgument("model_version", f"the demand model {self.config.model} is one file, "
                                                       f"without versions: leave it empty")
            model = self._file.current()
            return model, model.version, 0
        found = self.versions.current() if version is None else self.versions.version(version)
        return found.value, str(found.version), found.version

    def _stock(self, product_id: str, location: str) -> float | None:
        by_location = self.features.store.catalog.stock.get(product_id)
        if not by_location:
            return None
        if location:
            if location not in by_location:
                raise InvalidArgument("context[location]", f"product {product_id!r} has no stock record at "
                                                           f"{location!r} (known: {sorted(by_location)})")
            return by_location[location]
        return sum(by_location.values())

    async def quote(self, query: PriceQuery, request_id: str = "") -> PriceAnswer:
        model, answered, number = self._model(query.model_version)
        product = self.features.store.catalog.products.get(query.product_id)
        if product is None:
            raise NotFound(f"product {query.product_id!r} is not in the catalogue")
        cost = query.cost if query.cost is not None else product.get("cost")
        if cost is None:
            raise FailedPrecondition(f"product {query.product_id!r} has no cost in the catalogue, so no margin "
                                     f"floor can hold: pass context cost")
        price = query.current_price if query.current_price is not None else product.get("price")
        if price is None or price <= 0:
            raise FailedPrecondition(f"product {query.product_id!r} has no price in the catalogue to move from: "
                                     f"pass context current_price")
        stock = query.stock if query.stock is not None else self._stock(query.product_id, query.location)
        block = await self.features.read("product", [query.product_id], list(TRAFFIC))
        values = [math.nan if block.missing[0, i] else float(block.values[0, i]) for i in range(len(TRAFFIC))]
        views_24h, views_7d, sold_30d = values
        now = ProductNow(query.product_id, (product.get("category") or ["?"])[0], float(cost), float(price), stock,
                         views_24h if math.isfinite(views_7d) else math.nan, views_7d / 7.0,
                         sold_30d / 30.0 if math.isfinite(sold_30d) else 0.0)
        weekday = time.gmtime(self._clock()).tm_wday
        restock = query.days_to_restock or self.config.restock_days
        answer = PriceAnswer(quote(model, now, weekday, query.competitor_prices, self._rules, restock,
                                   self.config.extrapolation), answered)
        self.outcomes.quoted(query.product_id, f"pricing:{answered}", answer.quote.choice.price, float(cost),
                             int(self._clock() * 1000))
        if self.shadow is not None and self.shadow.enabled and self.versions is not None and query.model_version is None:
            self.shadow.offer(self.versions.name, self.versions.candidate(self.versions.name), request_id,
                              {"primary_version": number, "primary": round(answer.quote.choice.price, 4)},
                              lambda candidate, pause: self._shadow_quote(candidate, now, weekday, query, restock))
        return answer

    async def _shadow_quote(self, candidate: FileVersion[DemandModel], now: ProductNow, weekday: int,
                            query: PriceQuery, restock: float) -> dict:
        """The candidate's quote from the primary's own reads (the same product, moment and rules)."""
        choice = quote(candidate.value, now, weekday, query.competitor_prices, self._rules, restock,
                       self.config.extrapolation).choice
        return {"price": round(choice.price, 4), "expected_units": round(choice.expected_units, 4),
                "expected_profit": round(choice.expected_profit, 4)}
