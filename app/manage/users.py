"""Creating users from the command line (the first admin, test accounts)."""

from __future__ import annotations

import msgspec
import psycopg2

from app.queries import audit_log, users
from app.schemas.accounts import Email


def create_user(dsn: str, email: str, password: str, name: str | None, role: str,
                hash_password) -> str:
    """Insert a user and return its id; ValueError if the email is bad or taken."""
    try:
        msgspec.convert(email, Email)
    except msgspec.ValidationError:
        raise ValueError(f"not an email address: {email!r}") from None
    name = (name or email.split("@", 1)[0])[:100]
    conn = psycopg2.connect(dsn, application_name="peregrine-cli", connect_timeout=10)
    try:
        with conn, conn.cursor() as cur:
            try:
                user = users.insert(cur, email, name, hash_password(password), role)
            except users.EmailTaken:
                raise ValueError(f"a user with email {email} already exists") from None
            audit_log.record(cur, "user.created_by_cli", subject_id=user.id, details={"role": role})
            return user.id
    finally:
        conn.close()
