"""The append-only audit log."""

from __future__ import annotations

import msgspec

_encode = msgspec.json.encode


def record(cur, action: str, *, actor_id: str | None = None, subject_id: str | None = None,
           ip: str | None = None, details: dict | None = None) -> None:
    cur.execute(
        "INSERT INTO audit_log (action, actor_id, subject_id, ip, details)"
        " VALUES (%s, %s, %s, %s, %s)",
        (action, actor_id, subject_id, ip, _encode(details or {}).decode()),
    )
