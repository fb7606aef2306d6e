"""Deterministic demo and benchmark data, loaded with COPY.

The same ``--seed`` always produces the same categories, products and users
(ids included), so load tests can be repeated. Rows that already exist are
left alone, which makes seeding safe to run twice.
"""

from __future__ import annotations

import io
import random
import uuid
from dataclasses import dataclass

import psycopg2

from app import emails, passwords
from app.progress import Progress

#: Every seeded user can log in with this password (load tests rely on it).
SEED_PASSWORD = "peregrine-load-test"
SEED_EMAIL = "user{index}@example.test"
BATCH = 10_000

CATEGORIES = [
    "Audio", "Books", "Cameras", "Clothing", "Computers", "Garden", "Groceries",
    "Health", "Home", "Jewelry", "Kitchen", "Music", "Office", "Outdoors",
    "Pet Supplies", "Phones", "Shoes", "Sports", "Tools", "Toys",
]
_ADJECTIVES = [
    "Compact", "Deluxe", "Eco", "Ergonomic", "Foldable", "Heavy-Duty", "Lightweight",
    "Modern", "Portable", "Premium", "Rugged", "Smart", "Vintage", "Wireless", "Classic",
]
_MATERIALS = ["Aluminium", "Bamboo", "Carbon", "Ceramic", "Cotton", "Glass", "Leather",
              "Linen", "Oak", "Steel", "Wool", "Titanium"]
_NOUNS = {
    "Audio": ["Headphones", "Speaker", "Amplifier", "Turntable"],
    "Books": ["Notebook", "Novel", "Atlas", "Cookbook"],
    "Cameras": ["Camera", "Lens", "Tripod", "Flash"],
    "Clothing": ["Jacket", "Shirt", "Scarf", "Sweater"],
    "Computers": ["Keyboard", "Monitor", "Mouse", "Laptop Stand"],
    "Garden": ["Planter", "Hose", "Shears", "Bench"],
    "Groceries": ["Coffee", "Tea", "Olive Oil", "Honey"],
    "Health": ["Yoga Mat", "Scale", "Massager", "Water Bottle"],
    "Home": ["Lamp", "Rug", "Clock", "Mirror"],
    "Jewelry": ["Ring", "Necklace", "Bracelet", "Watch"],
    "Kitchen": ["Kettle", "Pan", "Knife", "Blender"],
    "Music": ["Guitar", "Ukulele", "Keyboard Stand", "Metronome"],
    "Office": ["Desk", "Chair", "Pen", "Organizer"],
    "Outdoors": ["Tent", "Backpack", "Lantern", "Hammock"],
    "Pet Supplies": ["Leash", "Bed", "Bowl", "Toy"],
    "Phones": ["Phone Case", "Charger", "Cable", "Power Bank"],
    "Shoes": ["Sneakers", "Boots", "Sandals", "Slippers"],
    "Sports": ["Ball", "Racket", "Helmet", "Gloves"],
    "Tools": ["Drill", "Hammer", "Wrench", "Saw"],
    "Toys": ["Puzzle", "Robot", "Kite", "Blocks"],
}


@dataclass
class SeedResult:
    categories: int
    products: int
    users: int


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _slug(name: str) -> str:
    return "-".join(name.lower().replace("-", " ").split())


def _copy_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _load(cur, table: str, columns: str, rows, conflict: str, label: str, total: int) -> int:
    """COPY ``rows`` into a temp table, then insert what is new; return rows added."""
    cur.execute(f"CREATE TEMP TABLE seed_{table} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP")
    with Progress(label, total) as bar:
        buffer, pending = io.StringIO(), 0
        for row in rows:
            buffer.write("\t".join(_copy_escape(str(v)) for v in row) + "\n")
            pending += 1
            if pending == BATCH:
                buffer.seek(0)
                cur.copy_expert(f"COPY seed_{table} ({columns}) FROM STDIN", buffer)
                bar.advance(pending)
                buffer, pending = io.StringIO(), 0
        if pending:
            buffer.seek(0)
            cur.copy_expert(f"COPY seed_{table} ({columns}) FROM STDIN", buffer)
            bar.advance(pending)
    cur.execute(
        f"INSERT INTO {table} ({columns}) SELECT {columns} FROM seed_{table} {conflict}"
    )
    return cur.rowcount


def seed(dsn: str, *, products: int, users: int, seed_value: int = 1) -> SeedResult:
    rng = random.Random(seed_value)
    categories = [(_uuid(rng), name, _slug(name)) for name in CATEGORIES]
    password_hash = passwords.hash_now(SEED_PASSWORD) if users else ""

    def product_rows():
        for index in range(products):
            category_id, category, _ = categories[index % len(categories)]
            noun = rng.choice(_NOUNS[category])
            name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_MATERIALS)} {noun}"
            description = (f"A {name.lower()} from our {category.lower()} range. "
                           f"Model {rng.randint(100, 9999)}, batch {index}.")
            price = f"{rng.randint(100, 250_000) / 100:.2f}"
            stock = rng.choice((0, rng.randint(1, 20), rng.randint(20, 1000)))
            yield (_uuid(rng), f"SKU-{seed_value}-{index:07d}", name, description,
                   price, "USD", category_id, stock)

    def user_rows():
        for index in range(users):
            email = SEED_EMAIL.format(index=index)
            yield (_uuid(rng), email, emails.normalize(email), f"Load Test User {index}",
                   password_hash, "user")

    conn = psycopg2.connect(dsn, application_name="peregrine-seed", connect_timeout=10)
    try:
        with conn, conn.cursor() as cur:
            made_categories = _load(
                cur, "categories", "id, name, slug", categories,
                "ON CONFLICT DO NOTHING", "categories", len(categories),
            )
            # Products reference categories by slug in case they already existed.
            cur.execute("SELECT slug, id FROM categories")
            ids = dict(cur.fetchall())
            categories = [(ids[slug], name, slug) for _, name, slug in categories]
            made_products = _load(
                cur, "products",
                "id, sku, name, description, price, currency, category_id, stock",
                product_rows(), "ON CONFLICT DO NOTHING", "products", products,
            )
            made_users = _load(
                cur, "users", "id, email, email_key, name, password_hash, role", user_rows(),
                "ON CONFLICT DO NOTHING", "users", users,
            )
            cur.execute("ANALYZE categories; ANALYZE products; ANALYZE users")
    finally:
        conn.close()
    return SeedResult(made_categories, made_products, made_users)
