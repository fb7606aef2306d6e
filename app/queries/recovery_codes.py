"""The recovery_codes table: single-use codes of a TOTP enrolment, stored as sha256."""

from __future__ import annotations


def replace(cur, user_id: str, code_hashes: list[bytes]) -> None:
    cur.execute("DELETE FROM recovery_codes WHERE user_id = %s", (user_id,))
    cur.executemany("INSERT INTO recovery_codes (user_id, code_hash) VALUES (%s, %s)",
                    [(user_id, code_hash) for code_hash in code_hashes])


def spend(cur, user_id: str, code_hash: bytes) -> bool:
    cur.execute("UPDATE recovery_codes SET used_at = now() WHERE user_id = %s"
                " AND code_hash = %s AND used_at IS NULL", (user_id, code_hash))
    return cur.rowcount == 1


def remaining(cur, user_id: str) -> int:
    cur.execute("SELECT count(*) FROM recovery_codes WHERE user_id = %s AND used_at IS NULL",
                (user_id,))
    return cur.fetchone()[0]


def delete(cur, user_id: str) -> None:
    cur.execute("DELETE FROM recovery_codes WHERE user_id = %s", (user_id,))
