"""The users table."""

from __future__ import annotations

from datetime import datetime

import psycopg2.errors

from app import emails
from app.schemas.accounts import AccountOut, UserOut

_COLUMNS = "id::text, email, name, role, created_at"


class EmailTaken(Exception):
    """The email (compared without case) belongs to another user."""


def _user(row) -> UserOut:
    return UserOut(id=row[0], email=row[1], name=row[2], role=row[3], created_at=row[4])


def _user_or_none(row) -> UserOut | None:
    return None if row is None else _user(row)


def insert(cur, email: str, name: str, password_hash: str, role: str = "user") -> UserOut:
    try:
        cur.execute(
            "INSERT INTO users (email, email_key, name, password_hash, role)"
            f" VALUES (%s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (email, emails.normalize(email), name, password_hash, role),
        )
    except psycopg2.errors.UniqueViolation:
        raise EmailTaken(email) from None
    return _user(cur.fetchone())


def credentials_by_email(cur, email: str) -> tuple[str, str, str] | None:
    """``(id, password_hash, role)`` of the user with this email, any case."""
    cur.execute("SELECT id::text, password_hash, role FROM users WHERE email_key = %s",
                (emails.normalize(email),))
    return cur.fetchone()


def password_hash(cur, user_id: str) -> str | None:
    cur.execute("SELECT password_hash FROM users WHERE id = %s", (user_id,))
    row = cur.fetchone()
    return row[0] if row else None


def get(cur, user_id: str) -> UserOut | None:
    cur.execute(f"SELECT {_COLUMNS} FROM users WHERE id = %s", (user_id,))
    return _user_or_none(cur.fetchone())


def lock_admins(cur) -> list[str]:
    """Lock every admin's row (in id order, so two callers cannot deadlock)."""
    cur.execute("SELECT id::text FROM users WHERE role = 'admin' ORDER BY id FOR UPDATE")
    return [row[0] for row in cur.fetchall()]


def role_of(cur, user_id: str, *, lock: bool = False) -> str | None:
    cur.execute("SELECT role FROM users WHERE id = %s" + (" FOR UPDATE" if lock else ""),
                (user_id,))
    row = cur.fetchone()
    return row[0] if row else None


def update(cur, user_id: str, *, name: str | None = None, role: str | None = None,
           password_hash: str | None = None) -> UserOut | None:
    """Change the given fields (None leaves one alone); return the user."""
    cur.execute(
        "UPDATE users SET name = coalesce(%s, name), role = coalesce(%s, role),"
        " password_hash = coalesce(%s, password_hash), updated_at = now()"
        f" WHERE id = %s RETURNING {_COLUMNS}",
        (name, role, password_hash, user_id),
    )
    return _user_or_none(cur.fetchone())


def page(cur, limit: int, after: tuple[datetime, str] | None) -> list[UserOut]:
    """Users oldest first, ``limit + 1`` rows from after the cursor key."""
    if after is None:
        cur.execute(f"SELECT {_COLUMNS} FROM users ORDER BY created_at, id LIMIT %s",
                    (limit + 1,))
    else:
        cur.execute(
            f"SELECT {_COLUMNS} FROM users WHERE (created_at, id) > (%s, %s)"
            " ORDER BY created_at, id LIMIT %s",
            (after[0], after[1], limit + 1),
        )
    return [_user(row) for row in cur.fetchall()]


def mail_identity(cur, user_id: str) -> tuple[str, str, str, bool] | None:
    """``(email, email_key, name, verified)`` of the account, for a mail to it."""
    cur.execute("SELECT email, email_key, name, email_verified_at IS NOT NULL FROM users"
                " WHERE id = %s", (user_id,))
    return cur.fetchone()


_ACCOUNT = f"{_COLUMNS}, email_verified_at IS NOT NULL"


def _account(row) -> AccountOut | None:
    if row is None:
        return None
    return AccountOut(id=row[0], email=row[1], name=row[2], role=row[3], created_at=row[4],
                      email_verified=row[5])


def account(cur, user_id: str) -> AccountOut | None:
    """The user with its verification state (the export's profile)."""
    cur.execute(f"SELECT {_ACCOUNT} FROM users WHERE id = %s", (user_id,))
    return _account(cur.fetchone())


def mark_email_verified(cur, user_id: str) -> AccountOut | None:
    cur.execute("UPDATE users SET email_verified_at = coalesce(email_verified_at, now()),"
                f" updated_at = now() WHERE id = %s RETURNING {_ACCOUNT}", (user_id,))
    return _account(cur.fetchone())


def set_password(cur, user_id: str, password_hash: str) -> bool:
    cur.execute("UPDATE users SET password_hash = %s, updated_at = now() WHERE id = %s",
                (password_hash, user_id))
    return cur.rowcount == 1
