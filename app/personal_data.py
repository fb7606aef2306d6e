"""Data-protection requests: export everything about the caller, or delete the account.

The export is read in one repeatable-read snapshot, so its parts agree with
each other. Deletion checks the password (hashing off the event loop, no
connection held), then in one transaction refuses to remove the last admin
(with every admin row locked, as a demotion does), keeps the orders without
personal data and removes the rest (app/queries/personal_data.py).
"""

from __future__ import annotations

from datetime import datetime, timezone

from app.errors import AccountGone, Conflict, Forbidden
from app.queries import audit_log, personal_data, users
from app.queries import orders as order_queries
from app.schemas.orders import OrderOut
from app.schemas.personal_data import ExportOut, TwoFactorOut

_ORDER_BATCH = 200


class PersonalData:
    def __init__(self, pool, passwords, metrics):
        self._pool = pool
        self._passwords = passwords
        self._metrics = metrics

    def export(self, user_id: str) -> ExportOut:
        with self._pool.transaction() as conn, conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            profile = users.account(cur, user_id)
            if profile is None:
                raise AccountGone()
            totp_on, codes_left = personal_data.two_factor(cur, user_id)
            export = ExportOut(
                exported_at=datetime.now(timezone.utc), profile=profile,
                two_factor=TwoFactorOut(totp=totp_on, recovery_codes_left=codes_left),
                orders=_all_orders(cur, user_id),
                sessions=personal_data.sessions(cur, user_id),
                audit=personal_data.audit_entries(cur, user_id))
        self._metrics.incr("users.exported")
        return export

    def delete(self, user_id: str, current_password: str, ip: str | None) -> None:
        with self._pool.connection() as conn, conn.cursor() as cur:
            current_hash = users.password_hash(cur, user_id)
        if current_hash is None:
            raise AccountGone()
        if not self._passwords.verify(current_hash, current_password):
            raise Forbidden("current_password is incorrect")
        with self._pool.transaction() as conn, conn.cursor() as cur:
            # A user's deletion locks nothing else; an admin's locks the admin
            # set (in id order, like a demotion) so that two admins deleting
            # themselves at once cannot leave none.
            if users.role_of(cur, user_id) == "admin":
                admins = users.lock_admins(cur)
                if user_id in admins and len(admins) == 1:
                    raise Conflict("the last admin cannot be deleted")
            orders, existed = personal_data.erase(cur, user_id)
            if not existed:
                raise AccountGone()
            audit_log.record(cur, "user.deleted", subject_id=user_id,
                             details={"orders_kept": orders})
        self._metrics.incr("users.deleted")


def _all_orders(cur, user_id: str) -> list[OrderOut]:
    found: list[OrderOut] = []
    before = None
    while True:
        batch = order_queries.page(cur, user_id, _ORDER_BATCH, before)
        found += batch[:_ORDER_BATCH]
        if len(batch) <= _ORDER_BATCH:
            return found
        last = found[-1]
        before = (last.created_at, last.id)
