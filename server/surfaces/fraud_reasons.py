"""Plain words for a fraud reason: what the input that pushed the score up says about the order
("4 cards used by this account in the last 24 hours"). Merchants act on reasons they can read."""
from __future__ import annotations

import math

from .fraud_inputs import signal_feature


def _count(value: float, one: str, many: str) -> str:
    n = int(round(value))
    return f"{n} {one if n == 1 else many}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} seconds"
    if seconds < 7200:
        return f"{seconds / 60:.0f} minutes"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} hours"
    return f"{seconds / 86400:.0f} days"


TEMPLATES = {
    "user_orders_1h": lambda v: f"{_count(v, 'order', 'orders')} from this account in the last hour",
    "user_orders_24h": lambda v: f"{_count(v, 'order', 'orders')} from this account in the last 24 hours",
    "user_order_count_30d": lambda v: f"{_count(v, 'order', 'orders')} from this account in 30 days",
    "user_avg_order_value_30d": lambda v: f"the account's usual order is {v:,.2f}",
    "user_amount_24h": lambda v: f"{v:,.2f} ordered by this account in the last 24 hours",
    "user_distinct_cards_24h": lambda v: f"{_count(v, 'card', 'cards')} used by this account in the last 24 hours",
    "user_distinct_cards_30d": lambda v: f"{_count(v, 'card', 'cards')} used by this account in 30 days",
    "user_distinct_devices_30d": lambda v: f"{_count(v, 'device', 'devices')} used by this account in 30 days",
    "user_distinct_shipping_addresses_30d":
        lambda v: f"{_count(v, 'shipping address', 'shipping addresses')} on this account in 30 days",
    "user_views_24h": lambda v: f"{_count(v, 'product view', 'product views')} by the account in 24 hours",
    "user_age": lambda v: f"the account was first seen {_duration(v)} ago",
    "session_duration": lambda v: f"{_duration(v)} on the site before ordering",
    "session_event_count_24h": lambda v: f"{_count(v, 'page event', 'page events')} in the session",
    "session_product_views_24h": lambda v: f"{_count(v, 'product viewed', 'products viewed')} in the session",
    "session_since_page_view": lambda v: f"checkout filled in {_duration(v)}",
    "card_orders_1h": lambda v: f"{_count(v, 'order', 'orders')} on this card in the last hour",
    "card_orders_24h": lambda v: f"{_count(v, 'order', 'orders')} on this card in the last 24 hours",
    "card_amount_24h": lambda v: f"{v:,.2f} charged to this card in the last 24 hours",
    "card_distinct_shipping_addresses_30d":
        lambda v: f"this card shipped to {_count(v, 'address', 'addresses')} in 30 days",
    "card_distinct_users_30d": lambda v: f"this card used by {_count(v, 'account', 'accounts')} in 30 days",
    "card_age": lambda v: f"the card's first order was {_duration(v)} ago",
    "device_distinct_users_30d": lambda v: f"this device used by {_count(v, 'account', 'accounts')} in 30 days",
    "device_orders_24h": lambda v: f"{_count(v, 'order', 'orders')} from this device in the last 24 hours",
    "device_distinct_cards_24h": lambda v: f"{_count(v, 'card', 'cards')} used on this device in the last 24 hours",
    "device_age": lambda v: f"the device was first seen {_duration(v)} ago",
    "address_orders_24h": lambda v: f"{_count(v, 'order', 'orders')} to this address in the last 24 hours",
    "address_distinct_users_30d": lambda v: f"{_count(v, 'account', 'accounts')} ship to this address (30 days)",
    "address_distinct_cards_30d": lambda v: f"{_count(v, 'card', 'cards')} ship to this address (30 days)",
    "network_entities": lambda v: "part of a network of " + _count(
        v, "account, card, device or address", "accounts, cards, devices and addresses"),
    "network_users": lambda v: f"linked to {_count(v, 'account', 'accounts')} by shared cards, devices or addresses",
    "network_cards": lambda v: f"linked to {_count(v, 'card', 'cards')} through shared accounts, devices or addresses",
    "network_devices": lambda v: f"linked to {_count(v, 'device', 'devices')}",
    "network_addresses": lambda v: f"linked to {_count(v, 'shipping address', 'shipping addresses')}",
    "network_emails": lambda v: f"linked to {_count(v, 'email address', 'email addresses')}",
    "network_orders": lambda v: f"linked to {_count(v, 'earlier order', 'earlier orders')}",
    "network_chargebacks": lambda v: f"linked to {_count(v, 'charged-back order', 'charged-back orders')}",
    "network_blocklisted": lambda v: _count(v, "card, device, address or email", "cards, devices, addresses or emails")
    + " of the order used in a charged-back order",
    "order_amount": lambda v: f"an order of {v:,.2f}",
    "order_log_amount": lambda v: f"an order of {math.expm1(v):,.2f}",
    "order_items": lambda v: f"{_count(v, 'line', 'lines')} in the order",
    "order_amount_over_user_average": lambda v: f"{v:.1f} times the account's usual order",
    "order_ships_elsewhere": lambda v: "ships to an address other than the billing address" if v
    else "ships to the billing address",
    "order_anonymous": lambda v: "a guest checkout" if v else "a signed-in account",
}

SIGNAL_TEMPLATES = {
    "cvv_match": lambda v: "the card's CVV matched" if v else "the card's CVV did not match",
    "avs_match": lambda v: "the billing address matched the card" if v
    else "the billing address did not match the card",
    "ip_distance_km": lambda v: f"ordered from {v:,.0f} km away from the address",
}


# What an unknown value means, by the entity the feature describes: nothing on record for it.
UNKNOWN = {
    "user": "an account with no history here",
    "session": "no browsing seen in this session before checkout",
    "card": "a card never seen before",
    "device": "a device never seen before",
    "address": "a shipping address never seen before",
}


def reason_text(feature: str, value: float) -> str:
    if math.isnan(value):
        unknown = UNKNOWN.get(feature.split("_", 1)[0])
        if unknown is not None:
            return unknown
        if feature == "order_amount_over_user_average":
            return "no usual order amount for the account to compare with"
        return f"{feature.removeprefix(signal_feature(''))} not given"
    template = TEMPLATES.get(feature)
    if template is not None:
        return template(value)
    prefix = signal_feature("")
    if feature.startswith(prefix):
        name = feature[len(prefix):]
        signal = SIGNAL_TEMPLATES.get(name)
        return signal(value) if signal is not None else f"processor signal {name} = {value:g}"
    return f"{feature} = {value:g}"
