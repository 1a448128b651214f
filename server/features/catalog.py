"""The catalog as the store knows it: product records from the catalog file and from
catalog_update events, latest prices and stock by location. Updates take effect at once."""
from __future__ import annotations

from typing import Any

from .definitions import CATEGORY_SLOTS
from .tenancy import is_scoped


class CatalogState:
    def __init__(self) -> None:
        # What readers cache against: product records changed; a product ran out or came back.
        # A purchase that leaves stock above zero, or a price change, moves neither.
        self.product_revision = 0
        self.stock_revision = 0
        self.products: dict[str, dict[str, Any]] = {}
        self.stock: dict[str, dict[str, float]] = {}  # product -> location -> units
        self.out_of_stock: set[str] = set()
        self.roots: dict[str, int] = {}  # root category -> share slot, by first appearance
        # Product ids in the order their records changed, for readers that follow the catalog
        # incrementally (the search index); a restore starts a new generation of it.
        self._changes: list[str] = []
        self.generation = 0

    def upsert(self, record: dict[str, Any]) -> None:
        self.product_revision += 1
        product_id = record["product_id"]
        self._changes.append(product_id)
        current = self.products.get(product_id, {})
        current.update({k: v for k, v in record.items() if v is not None})
        self.products[product_id] = current
        category = current.get("category")
        if category and category[0] not in self.roots:
            # Slots follow the order roots first appear in the catalog, the same online and offline.
            self.roots[category[0]] = min(len(self.roots), CATEGORY_SLOTS - 1)
        if record.get("stock") is not None and not self.stock.get(product_id):
            self.stock[product_id] = {"": float(record["stock"])}
            self._recheck(product_id)

    def category_slot(self, product_id: str) -> int | None:
        """The share slot of a product's root category (the last slot holds every root past
        the first CATEGORY_SLOTS - 1); None if the product has no category."""
        product = self.products.get(product_id)
        category = product.get("category") if product else None
        if not category:
            return None
        return self.roots[category[0]]

    def apply(self, record: dict[str, Any]) -> None:
        kind, payload = record["event_type"], record["payload"]
        if kind == "catalog_update":
            self.upsert(payload)
        elif kind == "price_change":
            self.products.setdefault(payload["product_id"], {"product_id": payload["product_id"]})["price"] = \
                payload["price"]
        elif kind == "stock_update":
            by_location = self.stock.setdefault(payload["product_id"], {})
            by_location[payload.get("location") or ""] = float(payload["quantity"])
            self._recheck(payload["product_id"])
        elif kind == "purchase" and payload.get("product_id") and not is_scoped(record):
            # the shared catalogue's stock is moved by the unnamed shop's sales only: a merchant's
            # purchase (its ids scoped: features/tenancy.py) must not empty a product for all
            by_location = self.stock.get(payload["product_id"])
            if by_location:
                location = (record.get("context") or {}).get("location") or next(iter(by_location))
                if location in by_location:
                    by_location[location] -= float(payload.get("quantity") or 1)
                    self._recheck(payload["product_id"])

    def _recheck(self, product_id: str) -> None:
        """Keep out_of_stock (and its revision) in step with one product's stock."""
        gone = not self.in_stock(product_id)
        if gone != (product_id in self.out_of_stock):
            (self.out_of_stock.add if gone else self.out_of_stock.discard)(product_id)
            self.stock_revision += 1

    def in_stock(self, product_id: str) -> bool:
        """Unknown stock counts as available; known stock must be positive somewhere."""
        by_location = self.stock.get(product_id)
        return not by_location or any(units > 0 for units in by_location.values())

    def state(self) -> dict[str, Any]:
        return {"products": self.products, "stock": self.stock, "roots": self.roots}

    @property
    def change_count(self) -> int:
        """The position changes_since() starts from to see only later changes."""
        return len(self._changes)

    def changes_since(self, position: int) -> tuple[list[str], int]:
        """Products whose records changed since `position` (each once), and the new position."""
        changed = list(dict.fromkeys(self._changes[position:]))
        return changed, len(self._changes)

    def restore(self, state: dict[str, Any]) -> None:
        self.products, self.stock, self.roots = state["products"], state["stock"], state["roots"]
        self._changes = list(self.products)
        self.generation += 1
        self.out_of_stock = {product for product in self.stock if not self.in_stock(product)}
        self.product_revision += 1
        self.stock_revision += 1
