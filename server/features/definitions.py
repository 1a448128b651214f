"""Features, declared once: what entity a feature describes, which events feed it, how they
aggregate and over which window. The online store computes them incrementally from live
events and the offline join replays the log through the same store, so both give the same
numbers.

Windows are sliding at bucket granularity: a 7d value at time T counts the events of the
28 six-hour buckets ending with T's bucket (so between 6.75 and 7 days back). A feature may
bucket its window more coarsely (`buckets`) where its memory matters more than the edge.
"""
from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field

# window -> (bucket width in ms, buckets held)
WINDOWS: dict[str, tuple[int, int]] = {
    "1h": (300_000, 12),
    "24h": (3_600_000, 24),
    "7d": (21_600_000, 28),
    "30d": (86_400_000, 30),
    "90d": (518_400_000, 15),  # six-day buckets: a customer's quarter, 15 slots
}
# span: seconds from the first source event to the latest; since: from the latest to the read's
# moment (e.g. form filling: since the checkout page); age: from the first to the read's moment.
# Over the entity's whole life, in O(1) memory: total, a field's sum; days, the days (UTC) with
# a source event (a customer's purchase days); first_day and last_day, the day number (UTC days
# since 1970) of the first and the latest.
AGGREGATIONS = ("count", "sum", "mean", "rate", "share", "distinct", "last", "sequence", "span", "since", "age",
                "total", "days", "first_day", "last_day")
LIFETIME = ("total", "days", "first_day", "last_day")
ENTITIES = ("user", "session", "product", "card", "device", "address")  # address: where an order ships
# An entity not seen for this long is forgotten: reads answer it as unknown (missing), the
# same online and offline, and the store reclaims its rows. Sessions end; cards and devices
# outlive every window that reads them; users and products are kept.
ENTITY_TTL_MS: dict[str, int | None] = {
    "user": None,
    "session": 86_400_000,
    "product": None,
    "card": 31 * 86_400_000,
    "device": 31 * 86_400_000,
    "address": 31 * 86_400_000,
}
SESSION_EVENTS = ("page_view", "product_view", "add_to_cart", "purchase", "search", "recommendation_shown",
                  "recommendation_clicked")
CATEGORY_SLOTS = 16  # width of a category share: root categories by first appearance, the rest in the last slot


@dataclass(frozen=True)
class Feature:
    name: str
    entity: str
    aggregation: str
    sources: tuple[str, ...]
    window: str | None = None
    field: str | None = None  # the payload value aggregated: amount, quantity, price, card_id, ... category
    denominator: tuple[str, ...] = ()  # rate: events counted below the line
    weights: dict[str, float] = dataclass_field(default_factory=dict)  # count/share: per source event type (default 1)
    length: int = 20  # sequence: items kept
    buckets: int | None = None  # a coarser (or finer) bucketing of the window than WINDOWS gives
    default: float = 0.0
    description: str = ""

    def __post_init__(self) -> None:
        problems = []
        if self.aggregation not in AGGREGATIONS:
            problems.append(f"aggregation {self.aggregation!r} is not one of {AGGREGATIONS}")
        if self.entity not in ENTITIES:
            problems.append(f"entity {self.entity!r} is not one of {ENTITIES}")
        windowed = self.aggregation in ("count", "sum", "mean", "rate", "share", "distinct")
        if windowed and self.window not in WINDOWS:
            problems.append(f"a {self.aggregation} needs a window in {sorted(WINDOWS)}")
        if not windowed and self.window is not None:
            problems.append(f"a {self.aggregation} takes no window")
        if self.aggregation in ("sum", "mean", "distinct", "last", "sequence", "share", "total") and not self.field:
            problems.append(f"a {self.aggregation} needs a field")
        if self.aggregation == "rate" and not self.denominator:
            problems.append("a rate needs denominator event types")
        if problems:
            raise ValueError(f"feature {self.name}: " + "; ".join(problems))

    @property
    def bucketing(self) -> tuple[int, int]:
        """(bucket width in ms, buckets held) of a windowed feature."""
        bucket_ms, buckets = WINDOWS[self.window]
        if self.buckets is None:
            return bucket_ms, buckets
        return bucket_ms * buckets // self.buckets, self.buckets

    @property
    def window_ms(self) -> int:
        bucket_ms, buckets = WINDOWS[self.window]
        return bucket_ms * buckets

    @property
    def width(self) -> int:
        """Columns the feature takes in a gathered matrix (sequences are gathered apart)."""
        return CATEGORY_SLOTS if self.aggregation == "share" else 0 if self.aggregation == "sequence" else 1


FEATURES: tuple[Feature, ...] = (
    # --- the user: what recommendations and fraud both read
    Feature("user_purchase_count_7d", "user", "count", ("purchase",), "7d",
            description="purchase events (order lines) in the last 7 days"),
    Feature("user_views_24h", "user", "count", ("product_view",), "24h"),
    Feature("user_order_count_30d", "user", "count", ("order",), "30d"),
    Feature("user_avg_order_value_30d", "user", "mean", ("order",), "30d", field="amount",
            description="mean order amount over 30 days: the user's usual amount"),
    Feature("user_orders_1h", "user", "count", ("order",), "1h"),
    Feature("user_orders_24h", "user", "count", ("order",), "24h"),
    Feature("user_distinct_cards_24h", "user", "distinct", ("order",), "24h", field="card_id"),
    Feature("user_distinct_cards_30d", "user", "distinct", ("order",), "30d", field="card_id"),
    Feature("user_distinct_devices_30d", "user", "distinct", ("order",), "30d", field="device_id"),
    Feature("user_distinct_shipping_addresses_30d", "user", "distinct", ("order",), "30d",
            field="shipping_address_id"),
    Feature("user_category_affinity_30d", "user", "share", ("product_view", "add_to_cart", "purchase"), "30d",
            field="category", weights={"product_view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}, buckets=10,
            description="share of the user's weighted interest per root category (3-day buckets)"),
    Feature("user_recent_viewed", "user", "sequence", ("product_view",), field="product_id", length=20),
    Feature("user_recent_bought", "user", "sequence", ("purchase",), field="product_id", length=100,
            description="the last 100 products bought: the user tower reads 20, the repeat signal all"),
    # --- the customer over a whole life (server/customers: who buys again, and for how much);
    # a purchase day is a day with at least one purchase event
    Feature("user_purchase_days", "user", "days", ("purchase",),
            description="days with a purchase, over the customer's whole life"),
    Feature("user_lifetime_spend", "user", "total", ("purchase",), field="amount",
            description="everything the customer spent (amount, or price x quantity)"),
    Feature("user_first_purchase_day", "user", "first_day", ("purchase",),
            description="the day (UTC days since 1970) of the customer's first purchase"),
    Feature("user_last_purchase_day", "user", "last_day", ("purchase",),
            description="the day of the customer's latest purchase"),
    Feature("user_purchases_30d", "user", "count", ("purchase",), "30d"),
    Feature("user_purchases_90d", "user", "count", ("purchase",), "90d"),
    Feature("user_spend_90d", "user", "sum", ("purchase",), "90d", field="amount"),
    # --- the session
    Feature("session_duration", "session", "span", SESSION_EVENTS, description="seconds from first to last event"),
    Feature("session_event_count_24h", "session", "count", SESSION_EVENTS, "24h"),
    Feature("session_recent_viewed", "session", "sequence", ("product_view",), field="product_id", length=20),
    # --- the product
    Feature("product_views_24h", "product", "count", ("product_view",), "24h"),
    Feature("product_views_7d", "product", "count", ("product_view",), "7d"),
    Feature("product_units_sold_7d", "product", "sum", ("purchase",), "7d", field="quantity"),
    Feature("product_units_sold_30d", "product", "sum", ("purchase",), "30d", field="quantity"),
    Feature("product_view_to_purchase_rate_30d", "product", "rate", ("purchase",), "30d",
            denominator=("product_view",)),
    Feature("product_price", "product", "last", ("price_change", "catalog_update", "product_view", "purchase"),
            field="price", description="latest known price"),
    # --- cards and devices: the fraud network's velocity
    Feature("card_orders_1h", "card", "count", ("order",), "1h"),
    Feature("card_distinct_shipping_addresses_30d", "card", "distinct", ("order",), "30d",
            field="shipping_address_id"),
    Feature("card_distinct_users_30d", "card", "distinct", ("order",), "30d", field="user_id"),
    Feature("device_distinct_users_30d", "device", "distinct", ("order",), "30d", field="user_id"),
    Feature("device_orders_24h", "device", "count", ("order",), "24h"),
    # --- what the fraud model reads beside them (an order's own event is applied only after
    # it is scored, so each counts the orders before it)
    Feature("user_amount_24h", "user", "sum", ("order",), "24h", field="amount"),
    Feature("user_age", "user", "age", SESSION_EVENTS + ("order",),
            description="seconds since the account's first event: new accounts are riskier"),
    Feature("session_product_views_24h", "session", "count", ("product_view",), "24h"),
    Feature("session_since_page_view", "session", "since", ("page_view",),
            description="seconds since the session's latest page view: at checkout, the form-filling time"),
    Feature("card_orders_24h", "card", "count", ("order",), "24h"),
    Feature("card_amount_24h", "card", "sum", ("order",), "24h", field="amount"),
    Feature("card_age", "card", "age", ("order",), description="seconds since the card's first order"),
    Feature("device_distinct_cards_24h", "device", "distinct", ("order",), "24h", field="card_id"),
    Feature("device_age", "device", "age", SESSION_EVENTS + ("order",),
            description="seconds since the device was first seen"),
    Feature("address_orders_24h", "address", "count", ("order",), "24h"),
    Feature("address_distinct_users_30d", "address", "distinct", ("order",), "30d", field="user_id"),
    Feature("address_distinct_cards_30d", "address", "distinct", ("order",), "30d", field="card_id"),
)

BY_NAME = {f.name: f for f in FEATURES}
