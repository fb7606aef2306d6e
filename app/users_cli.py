"""Creating users from the command line (the first admin, test accounts)."""

from __future__ import annotations

import psycopg2
import psycopg2.errors


def create_user(dsn: str, email: str, password: str, name: str | None, role: str,
                hash_password) -> str:
    """Insert a user and return its id; ValueError if the email is taken."""
    if "@" not in email or email.startswith("@") or email.endswith("@"):
        raise ValueError(f"not an email address: {email!r}")
    name = name or email.split("@", 1)[0]
    conn = psycopg2.connect(dsn, application_name="peregrine-cli", connect_timeout=10)
    try:
        with conn, conn.cursor() as cur:
            try:
                cur.execute(
                    "INSERT INTO users (email, name, password_hash, role)"
                    " VALUES (%s, %s, %s, %s) RETURNING id",
                    (email, name[:100], hash_password(password), role),
                )
            except psycopg2.errors.UniqueViolation:
                raise ValueError(f"a user with email {email} already exists") from None
            return cur.fetchone()[0]
    finally:
        conn.close()
