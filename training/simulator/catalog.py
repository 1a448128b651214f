"""The simulated catalog: a category tree, products with titles, prices, costs, latent
attributes, and which of them are bought again and again."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# root -> subcategory -> (product nouns, repeat-purchase cycle in days or 0, median price)
TREE: dict[str, dict[str, tuple[tuple[str, ...], int, float]]] = {
    "Home": {"Lighting": (("table lamp", "floor lamp", "pendant light", "wall sconce"), 0, 60.0),
             "Furniture": (("sofa", "coffee table", "dining chair", "bookshelf"), 0, 240.0),
             "Decor": (("vase", "wall mirror", "area rug", "throw pillow"), 0, 35.0)},
    "Kitchen": {"Cookware": (("frying pan", "stock pot", "skillet", "saucepan"), 0, 45.0),
                "Appliances": (("blender", "toaster", "electric kettle", "coffee maker"), 0, 70.0),
                "Tableware": (("dinner plate", "coffee mug", "salad bowl", "wine glass"), 0, 18.0)},
    "Grocery": {"Snacks": (("potato chips", "cookies", "crackers", "granola bars"), 10, 4.0),
                "Beverages": (("ground coffee", "green tea", "orange juice", "sparkling water"), 8, 7.0),
                "Pantry": (("pasta", "basmati rice", "tomato sauce", "olive oil"), 14, 5.0)},
    "Beauty": {"Skincare": (("face cream", "serum", "cleanser", "sunscreen"), 30, 22.0),
               "Haircare": (("shampoo", "conditioner", "hair oil", "hair mask"), 25, 12.0)},
    "Electronics": {"Audio": (("headphones", "bluetooth speaker", "earbuds", "soundbar"), 0, 80.0),
                    "Computing": (("keyboard", "wireless mouse", "monitor", "usb hub"), 0, 65.0),
                    "Phone Accessories": (("phone charger", "phone case", "usb cable", "power bank"), 0, 20.0)},
    "Sports": {"Fitness": (("dumbbell set", "yoga mat", "resistance band", "kettlebell"), 0, 35.0),
               "Outdoor": (("camping tent", "hiking backpack", "lantern", "sleeping bag"), 0, 90.0)},
    "Toys": {"Games": (("jigsaw puzzle", "board game", "card game", "chess set"), 0, 25.0),
             "Building": (("building blocks", "robot kit", "train set", "marble run"), 0, 40.0)},
    "Garden": {"Tools": (("garden shovel", "rake", "pruning shears", "watering can"), 0, 28.0),
               "Plants": (("flower seeds", "planter", "potting soil", "fertilizer"), 45, 10.0)},
}
BRANDS = ("Lumina", "Northwind", "Acme", "Verde", "Solace", "Kestrel", "Orion", "Maple & Co", "Nimbus", "Halcyon",
          "Brightline", "Tidewater", "Ember", "Quill", "Arbor", "Zenith")
ADJECTIVES = ("modern", "classic", "compact", "deluxe", "premium", "essential", "rustic", "minimalist", "organic",
              "portable", "heavy-duty", "vintage", "ergonomic", "eco")
COLORS = ("black", "white", "grey", "navy", "sage green", "terracotta", "oak", "walnut", "brass", "red")

DIM = 8  # latent taste dimensions


@dataclass
class Catalog:
    ids: list[str]
    titles: list[str]
    descriptions: list[str]
    categories: list[list[str]]  # root first
    root: np.ndarray  # root category index per product
    sub: np.ndarray  # subcategory index per product
    noun: list[str]
    brand: list[str]
    color: list[str]
    base_price: np.ndarray
    cost: np.ndarray
    quality: np.ndarray  # latent appeal beyond taste
    vectors: np.ndarray  # [n, DIM] latent attributes
    repeat_days: np.ndarray  # 0: bought once; else a typical repurchase cycle
    launch_day: np.ndarray  # day the product enters the catalog (0: at start)
    roots: list[str]
    subs: list[tuple[str, str]]

    def __len__(self) -> int:
        return len(self.ids)

    def record(self, i: int, price: float, stock: float) -> dict:
        return {"product_id": self.ids[i], "title": self.titles[i], "description": self.descriptions[i],
                "category": self.categories[i], "price": round(float(price), 2), "cost": round(float(self.cost[i]), 2),
                "stock": float(stock), "attributes": {"brand": self.brand[i], "color": self.color[i]}}


def build_catalog(rng: np.random.Generator, n_products: int, days: int, new_share: float = 0.05) -> Catalog:
    roots = list(TREE)
    subs = [(root, sub) for root in roots for sub in TREE[root]]
    sub_vectors = rng.standard_normal((len(subs), DIM))
    root_vectors = rng.standard_normal((len(roots), DIM))
    # Popular subcategories get more products, as in a real assortment.
    weights = rng.dirichlet(np.full(len(subs), 2.0))
    sub_of = rng.choice(len(subs), size=n_products, p=weights)
    ids, titles, descriptions, categories, nouns, brands, colors = [], [], [], [], [], [], []
    roots_idx = np.empty(n_products, dtype=np.int64)
    base_price = np.empty(n_products)
    repeat = np.zeros(n_products, dtype=np.int64)
    vectors = np.empty((n_products, DIM))
    for i, s in enumerate(sub_of):
        root, sub = subs[s]
        noun_list, cycle, median = TREE[root][sub]
        noun = noun_list[rng.integers(len(noun_list))]
        brand, adjective, color = BRANDS[rng.integers(len(BRANDS))], ADJECTIVES[rng.integers(len(ADJECTIVES))], \
            COLORS[rng.integers(len(COLORS))]
        ids.append(f"p{i:05d}")
        titles.append(f"{brand} {adjective.title()} {color.title()} {noun.title()}")
        descriptions.append(f"A {adjective} {noun} in {color} by {brand}, for {sub.lower()} in your {root.lower()}.")
        categories.append([root, sub, noun])
        nouns.append(noun)
        brands.append(brand)
        colors.append(color)
        roots_idx[i] = roots.index(root)
        base_price[i] = median * float(np.exp(rng.normal(0, 0.45)))
        repeat[i] = cycle
        vectors[i] = 0.6 * root_vectors[roots_idx[i]] + 0.8 * sub_vectors[s] + 0.5 * rng.standard_normal(DIM)
    base_price = np.round(base_price, 2) + 0.0
    cost = np.round(base_price * rng.uniform(0.45, 0.75, n_products), 2)
    quality = rng.normal(0, 0.7, n_products)
    launch = np.where(rng.random(n_products) < new_share, rng.integers(1, max(days, 2), n_products), 0)
    return Catalog(ids, titles, descriptions, categories, roots_idx, sub_of.astype(np.int64), nouns, brands, colors,
                   base_price, cost, quality, vectors, repeat, launch, roots, subs)
