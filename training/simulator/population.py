"""Simulated shoppers: latent tastes that drift, activity, price sensitivity, and the cards,
devices, addresses and emails their orders carry."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .catalog import DIM


@dataclass
class Shopper:
    user_id: str
    taste: np.ndarray  # [DIM], unit norm, drifts daily
    activity: float  # expected sessions per day
    price_beta: float  # how strongly price relative to the category's typical price lowers appeal
    cards: list[str]
    devices: list[str]
    addresses: list[str]  # shipping addresses; [0] is home (the billing address)
    email: str
    ip_prefix: str
    location: str  # the warehouse that serves this shopper
    needs: dict[str, float] = field(default_factory=dict)  # product_id -> day a repeat need falls due
    joined_day: int = 0  # the first day the shopper visits: new customers keep arriving


LOCATIONS = ("wh-east", "wh-west")


def build_shoppers(rng: np.random.Generator, n_users: int) -> list[Shopper]:
    shoppers = []
    for u in range(n_users):
        taste = rng.standard_normal(DIM)
        taste /= np.linalg.norm(taste)
        n_cards = 1 + int(rng.random() < 0.35) + int(rng.random() < 0.1)
        n_devices = 1 + int(rng.random() < 0.4)
        n_addresses = 1 + int(rng.random() < 0.2)
        shoppers.append(Shopper(
            user_id=f"u{u:05d}",
            taste=taste,
            activity=float(np.exp(rng.normal(-1.6, 0.9))),
            price_beta=float(rng.gamma(4.0, 0.35)),
            cards=[f"card-u{u:05d}-{k}" for k in range(n_cards)],
            devices=[f"dev-u{u:05d}-{k}" for k in range(n_devices)],
            addresses=[f"addr-u{u:05d}-{k}" for k in range(n_addresses)],
            email=f"user{u:05d}@example.com",
            ip_prefix=f"10.{rng.integers(1, 250)}.{rng.integers(0, 250)}",
            location=LOCATIONS[int(rng.integers(len(LOCATIONS)))],
        ))
    return shoppers


def drift(rng: np.random.Generator, shopper: Shopper, scale: float = 0.08) -> None:
    taste = shopper.taste + scale * rng.standard_normal(DIM)
    shopper.taste = taste / np.linalg.norm(taste)
