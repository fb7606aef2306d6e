"""Deterministic demo and benchmark data, loaded with COPY.

The same ``--seed`` always produces the same categories, products and users
(ids included), so load tests can be repeated. Rows that already exist are
left alone, which makes seeding safe to run twice; the counts returned are
the rows really added.

Rows go in batches: COPY into a temporary table, then INSERT what is new, so
the index maintenance (most of the time on a big seed) is spread over the
batches the progress bar counts instead of one silent final statement.
"""

from __future__ import annotations

import io
import random
import uuid
from dataclasses import dataclass

import psycopg2

from app import emails, passwords
from app.manage.progress import Phases

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


def _load(cur, phases: Phases, table: str, columns: str, rows, total: int) -> int:
    """Insert the ``rows`` that are new, a batch at a time; return rows added."""
    cur.execute(f"CREATE TEMP TABLE seed_{table} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP")
    added = 0

    def flush(buffer: io.StringIO) -> int:
        buffer.seek(0)
        cur.copy_expert(f"COPY seed_{table} ({columns}) FROM STDIN", buffer)
        cur.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM seed_{table}"
                    " ON CONFLICT DO NOTHING")
        inserted = cur.rowcount
        cur.execute(f"TRUNCATE seed_{table}")
        return inserted

    with phases.phase(table, total) as advance:
        buffer, pending = io.StringIO(), 0
        for row in rows:
            buffer.write("\t".join(_copy_escape(str(v)) for v in row) + "\n")
            pending += 1
            if pending == BATCH:
                added += flush(buffer)
                advance(pending)
                buffer, pending = io.StringIO(), 0
        if pending:
            added += flush(buffer)
            advance(pending)
    phases.note(table, f"{added} added" + (f", {total - added} existed" if added < total else ""))
    return added


def _present(cur, query: str, params) -> int:
    cur.execute(query, params)
    return cur.fetchone()[0]


def seed(dsn: str, *, products: int, users: int, seed_value: int = 1,
         stream=None) -> SeedResult:
    # One generator per table: a table skipped because it is complete does
    # not change the rows (ids) another table gets.
    def rng_for(table: str) -> random.Random:
        return random.Random(f"peregrine-seed-{seed_value}-{table}")

    rng = rng_for("categories")
    categories = [(_uuid(rng), name, _slug(name)) for name in CATEGORIES]
    user_emails = [SEED_EMAIL.format(index=index) for index in range(users)]

    def product_rows():
        rng = rng_for("products")
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

    def user_rows(password_hash: str):
        rng = rng_for("users")
        for index, email in enumerate(user_emails):
            yield (_uuid(rng), email, emails.normalize(email), f"Load Test User {index}",
                   password_hash, "user")

    conn = psycopg2.connect(dsn, application_name="peregrine-seed", connect_timeout=10)
    made = {"categories": 0, "products": 0, "users": 0}
    try:
        with conn, conn.cursor() as cur, Phases(stream) as phases:
            made["categories"] = _load(cur, phases, "categories", "id, name, slug",
                                       categories, len(categories))
            # Products reference categories by slug in case they already existed.
            cur.execute("SELECT slug, id FROM categories")
            ids = dict(cur.fetchall())
            categories = [(ids[slug], name, slug) for _, name, slug in categories]

            # The SKUs are fixed-width, so this range is exactly this seed's first
            # ``products`` (under byte order, whatever the database collation).
            present = _present(cur, 'SELECT count(*) FROM products WHERE sku COLLATE "C" >= %s'
                                    ' AND sku COLLATE "C" < %s',
                               (f"SKU-{seed_value}-{0:07d}", f"SKU-{seed_value}-{products:07d}"))
            if products and present == products:
                phases.skipped("products", products, f"all {products} existed, 0 added")
            elif products:
                made["products"] = _load(
                    cur, phases, "products",
                    "id, sku, name, description, price, currency, category_id, stock",
                    product_rows(), products)

            keys = [emails.normalize(email) for email in user_emails]
            present = _present(cur, "SELECT count(*) FROM users WHERE email_key = ANY(%s)",
                               (keys,))
            if users and present == users:
                phases.skipped("users", users, f"all {users} existed, 0 added")
            elif users:
                with phases.phase("password hash", 1):
                    password_hash = passwords.hash_now(SEED_PASSWORD)
                made["users"] = _load(cur, phases, "users",
                                      "id, email, email_key, name, password_hash, role",
                                      user_rows(password_hash), users)

            analyzed = [table for table, count in made.items() if count]
            if analyzed:
                with phases.phase("analyze", len(analyzed)) as advance:
                    for table in analyzed:
                        cur.execute(f"ANALYZE {table}")
                        advance()
            else:
                phases.skipped("analyze", 1, "nothing added, statistics kept")
    finally:
        conn.close()
    return SeedResult(made["categories"], made["products"], made["users"])
