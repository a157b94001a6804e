"""The demo shop's product catalog and money formatting.

A few hundred products in eight categories, each with a lognormal list price that is converted
into every order currency and rounded the way shops price (29.99, 59.90 yuan, 5,980 yen).
Products within a category are kept sorted by price so that a customer's taste for cheap or
expensive items is a position in that order. JSON fragments for each SKU are rendered once,
so writing an order line is string concatenation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from cdp.demo import fastfmt as ff
from cdp.demo.locales import CURRENCIES, MINOR_DIGITS, USD_RATE

IntArray = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Category:
    """A product category: how its products are named, priced and varied."""

    name: str
    share: float
    median_usd: float
    sigma: float
    adjectives: tuple[str, ...]
    nouns: tuple[str, ...]
    variants: tuple[str, ...]


CATEGORIES: tuple[Category, ...] = (
    Category("apparel", 0.22, 32.0, 0.55,
             ("Linen", "Cotton", "Oversized", "Slim-fit", "Cropped", "Merino", "Classic",
              "Relaxed"),
             ("shirt", "T-shirt", "hoodie", "dress", "jeans", "jacket", "skirt", "cardigan"),
             ("S", "M", "L", "XL")),
    Category("shoes", 0.09, 68.0, 0.45,
             ("Running", "Leather", "Canvas", "Trail", "Suede", "Everyday"),
             ("sneakers", "boots", "loafers", "sandals", "slip-ons", "trainers"),
             ("38", "39", "40", "41", "42", "43", "44")),
    Category("beauty", 0.17, 24.0, 0.60,
             ("Hydrating", "Vitamin C", "Matte", "Gentle", "Repair", "Brightening", "Daily"),
             ("serum", "face cream", "lipstick", "cleanser", "sunscreen", "toner", "eye mask"),
             ("30ML", "50ML")),
    Category("electronics", 0.10, 95.0, 0.85,
             ("Wireless", "Portable", "Smart", "Noise-cancelling", "Compact", "Fast"),
             ("earbuds", "charger", "power bank", "speaker", "smartwatch", "keyboard"),
             ("BLK", "WHT")),
    Category("home", 0.12, 38.0, 0.65,
             ("Ceramic", "Bamboo", "Linen", "Nordic", "Scented", "Stackable"),
             ("mug", "storage box", "cushion cover", "candle", "throw blanket", "plant pot"),
             ("STD",)),
    Category("grocery", 0.14, 11.0, 0.50,
             ("Organic", "Roasted", "Single-origin", "Sparkling", "Wholegrain", "Premium"),
             ("green tea", "coffee beans", "almonds", "dark chocolate", "oat milk", "honey"),
             ("1PK", "3PK")),
    Category("sports", 0.08, 42.0, 0.60,
             ("Pro", "Lightweight", "Anti-slip", "Quick-dry", "Adjustable", "Foldable"),
             ("yoga mat", "water bottle", "dumbbells", "gym bag", "resistance band", "cap"),
             ("STD",)),
    Category("baby", 0.08, 22.0, 0.55,
             ("Soft", "Organic", "Gentle", "Stage 2", "Anti-colic", "Hypoallergenic"),
             ("diapers", "wipes", "bottle", "bodysuit", "formula", "teether"),
             ("STD",)),
)  # fmt: skip

PRODUCTS_PER_CATEGORY = 36
MAX_QUANTITY = 3

_CENTS = [f"{k:02d}" for k in range(100)]


def money(minor: list[int], digits: list[int]) -> list[str]:
    """Minor units -> decimal strings with 2 places, or whole units where `digits` is 0."""
    cents = _CENTS
    return [
        f"{v // 100}.{cents[v % 100]}" if d else str(v) for v, d in zip(minor, digits, strict=True)
    ]


def _charm(usd: float, currency: int) -> int:
    """List price in minor units of `currency`, rounded the way shops round prices."""
    value = usd * USD_RATE[currency]
    code = CURRENCIES[currency]
    if code == "JPY":
        if value >= 500:
            return max(100, round(value / 100) * 100 - 20)
        return max(10, round(value / 10) * 10)
    if code == "CNY":
        step = 10 if value >= 20 else 1
        return max(90, round(value / step) * step * 100 - 10)
    ending = 5 if code == "EUR" else 1
    return max(49, round(value) * 100 - ending)


class Catalog:
    """Products, SKUs, prices per currency, and the pre-rendered JSON for each SKU."""

    def __init__(self, rng: np.random.Generator) -> None:
        per = PRODUCTS_PER_CATEGORY
        self.n_categories = len(CATEGORIES)
        self.n_products = per * self.n_categories
        self.category_share = np.array([c.share for c in CATEGORIES])
        self.category_share /= self.category_share.sum()
        names: list[str] = []
        usd = np.empty(self.n_products)
        for k, cat in enumerate(CATEGORIES):
            combos = [f"{a} {n}" for a in cat.adjectives for n in cat.nouns]
            chosen = rng.choice(len(combos), size=per, replace=False)
            prices = np.sort(rng.lognormal(np.log(cat.median_usd), cat.sigma, per))
            names.extend(combos[c] for c in chosen)
            usd[k * per : (k + 1) * per] = prices
        # Bestsellers: a Zipf-like popularity over a shuffled order within each category.
        ranks = np.concatenate([rng.permutation(per) for _ in CATEGORIES])
        self.popularity = 1.0 / (ranks + 1.0) ** 0.9
        # Category k's cumulative popularity runs from k to k + 1, so one sorted search
        # finds a bestseller of any category: searchsorted(cdf, k + u).
        cumulative = [
            k + np.cumsum(w) / w.sum()
            for k, w in enumerate(self.popularity.reshape(self.n_categories, per))
        ]
        self._popular_cdf = np.concatenate(cumulative)
        self.price = np.array(
            [[_charm(float(u), c) for c in range(len(CURRENCIES))] for u in usd], dtype=np.int64
        )
        self.variant_count = np.array(
            [len(CATEGORIES[p // per].variants) for p in range(self.n_products)], dtype=np.int64
        )
        self.sku_offset = np.concatenate(([0], np.cumsum(self.variant_count)[:-1]))
        self.product_ids = [f"P{p + 1:04d}" for p in range(self.n_products)]
        self.names = names
        self.sku_product: list[int] = []
        skus: list[str] = []
        for p in range(self.n_products):
            for v in CATEGORIES[p // per].variants:
                self.sku_product.append(p)
                skus.append(f"{self.product_ids[p]}-{v}")
        self.skus = skus
        self.product_props = self._fragments(with_currency=True)
        self.item_rows = self._item_rows()

    def _item_rows(self) -> ff.U8:
        """One row per (currency, SKU, quantity 1-3, last item or not) for order lines."""
        items = self._fragments(with_currency=False)
        return ff.table(
            [
                f'{head}, "quantity": {q}}}' + ("]}\n" if last else ", ")
                for per_currency in items
                for head in per_currency
                for q in range(1, MAX_QUANTITY + 1)
                for last in (False, True)
            ]
        )

    def item_index(
        self, currency: IntArray, sku: IntArray, quantity: IntArray, last: NDArray[np.bool_]
    ) -> IntArray:
        """Row of `item_rows` for each order item."""
        index: IntArray = ((currency * len(self.skus) + sku) * MAX_QUANTITY + quantity - 1) * 2
        return index + last

    def category_of(self, product: IntArray) -> IntArray:
        """Category index of each product index."""
        result: IntArray = product // PRODUCTS_PER_CATEGORY
        return result

    def _fragments(self, *, with_currency: bool) -> list[list[str]]:
        """Per currency, per SKU: its JSON object up to the price (or currency), unclosed.

        Order items continue with ``"quantity": n}``; event properties with more keys.
        """
        per_currency: list[list[str]] = []
        for c, code in enumerate(CURRENCIES):
            digits = MINOR_DIGITS[c]
            rows: list[str] = []
            for s, sku in enumerate(self.skus):
                p = self.sku_product[s]
                price = money([int(self.price[p, c])], [digits])[0]
                head = json.dumps(
                    {
                        "product_id": self.product_ids[p],
                        "sku": sku,
                        "category": CATEGORIES[p // PRODUCTS_PER_CATEGORY].name,
                        "name": self.names[p],
                        "price": price,
                    },
                    ensure_ascii=False,
                )[:-1]
                rows.append(head + (f', "currency": "{code}"' if with_currency else ""))
            per_currency.append(rows)
        return per_currency

    def choose(
        self,
        rng: np.random.Generator,
        favourite: IntArray,
        taste: NDArray[np.float64],
    ) -> tuple[IntArray, IntArray]:
        """Pick a product and SKU for each item, given the buyer's favourite category and taste.

        Half the items come from the favourite category; the rest follow category shares.
        Within the category a third are bestsellers, the others sit near the buyer's price taste
        (0 = cheapest, 1 = dearest).
        """
        n = len(favourite)
        per = PRODUCTS_PER_CATEGORY
        other = rng.choice(self.n_categories, size=n, p=self.category_share)
        category = np.where(rng.random(n) < 0.5, favourite, other)
        position = np.clip(taste + rng.normal(0.0, 0.18, n), 0.0, 0.999)
        by_taste = (position * per).astype(np.int64)
        bestseller = np.searchsorted(self._popular_cdf, category + rng.random(n))
        bestseller = np.minimum(bestseller, category * per + per - 1)
        product = np.where(rng.random(n) < 0.33, bestseller, category * per + by_taste)
        sku = self.sku_offset[product] + (rng.random(n) * self.variant_count[product]).astype(
            np.int64
        )
        return product, sku
