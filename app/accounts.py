"""Registration, login, token rotation and user management.

Resources call these; they raise domain errors and never hold a database
connection while a password is being hashed (hashing runs in a thread pool
and takes tens of milliseconds).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import NoReturn

from app import mfa, tokens
from app.errors import (
    AccountGone,
    Conflict,
    Forbidden,
    MfaRequired,
    NotFound,
    Unauthorized,
)
from app.ids import is_uuid
from app.pagination import UUIDText, decode_cursor, page
from app.queries import audit_log, refresh_tokens, users
from app.schemas.accounts import (
    LoginIn,
    RegisterIn,
    TokenPairOut,
    UpdateMeIn,
    UpdateUserIn,
    UserOut,
    UserPage,
)

log = logging.getLogger(__name__)

_BAD_CREDENTIALS = "invalid email or password"
_BAD_REFRESH = "the refresh token is invalid, expired or revoked"


class Accounts:
    def __init__(self, pool, passwords, secret: bytes, metrics):
        self._pool = pool
        self._passwords = passwords
        self._secret = secret
        self._metrics = metrics

    # -- auth -----------------------------------------------------------------

    def register(self, body: RegisterIn) -> UserOut:
        password_hash = self._passwords.hash(body.password)
        try:
            with self._pool.transaction() as conn, conn.cursor() as cur:
                user = users.insert(cur, body.email, body.name, password_hash)
                audit_log.record(cur, "user.register", actor_id=user.id, subject_id=user.id)
        except users.EmailTaken:
            raise Conflict("an account with this email already exists") from None
        return user

    def login(self, body: LoginIn, ip: str | None) -> TokenPairOut:
        with self._pool.connection() as conn, conn.cursor() as cur:
            found = users.credentials_by_email(cur, body.email)
        user_id, password_hash, role = found if found else (None, None, None)
        # An unknown email is checked against a dummy hash: same answer, same time.
        if not self._passwords.verify(password_hash, body.password):
            self._metrics.incr("auth.login.fail")
            with self._pool.connection() as conn, conn.cursor() as cur:
                audit_log.record(cur, "auth.login_failed", subject_id=user_id, ip=ip,
                             details={"known_user": user_id is not None})
            raise Unauthorized(_BAD_CREDENTIALS)
        # verify() fails on the dummy hash: the user was found.
        assert user_id is not None and password_hash is not None and role is not None
        refresh, refresh_hash = tokens.new_refresh_token()
        try:
            with self._pool.transaction() as conn, conn.cursor() as cur:
                # An account with two-factor sign-in gets a challenge, not a session.
                mfa_token = mfa.challenge_if_enrolled(cur, user_id, password_hash)
                if mfa_token is None:
                    refresh_tokens.create_family(cur, user_id, password_hash, refresh_hash,
                                                 tokens.REFRESH_LIFETIME)
                audit_log.record(cur, "auth.login" if mfa_token is None else "auth.mfa_challenged",
                                 actor_id=user_id, subject_id=user_id, ip=ip)
        except refresh_tokens.CredentialsChanged:
            # The password changed while this login was verifying the old one.
            raise Unauthorized(_BAD_CREDENTIALS) from None
        if mfa_token is not None:
            self._metrics.incr("auth.login.mfa_required")
            raise MfaRequired(mfa_token, int(mfa.CHALLENGE_LIFETIME.total_seconds()))
        self._metrics.incr("auth.login.ok")
        return self._pair(user_id, role, refresh)

    def refresh(self, presented: str, ip: str | None) -> TokenPairOut:
        presented_hash = tokens.hash_refresh_token(presented)
        refresh, refresh_hash = tokens.new_refresh_token()
        with self._pool.transaction() as conn, conn.cursor() as cur:
            rotated = refresh_tokens.rotate(cur, presented_hash, refresh_hash)
        if rotated is not None:
            user_id, role = rotated
            return self._pair(user_id, role, refresh)
        self._reject_refresh(presented_hash, ip)

    def _reject_refresh(self, presented_hash: bytes, ip: str | None) -> NoReturn:
        """A refresh that failed; a spent token means theft: revoke its family."""
        with self._pool.transaction() as conn, conn.cursor() as cur:
            known = refresh_tokens.find(cur, presented_hash)
            if known is not None and known[2]:  # spent before: a replay
                family_id, user_id, _ = known
                revoked = refresh_tokens.revoke_family(cur, family_id)
                audit_log.record(cur, "auth.refresh_reuse", subject_id=user_id, ip=ip,
                             details={"family_id": family_id, "revoked": revoked})
                self._metrics.incr("auth.refresh.reuse_detected")
                log.warning("refresh token reuse: family revoked",
                            extra={"family_id": family_id, "user_id": user_id})
        raise Unauthorized(_BAD_REFRESH)

    def logout(self, presented: str) -> None:
        with self._pool.transaction() as conn, conn.cursor() as cur:
            live = refresh_tokens.find_live(cur, tokens.hash_refresh_token(presented))
            if live is None:
                raise Unauthorized(_BAD_REFRESH)
            family_id, user_id = live
            refresh_tokens.revoke_family(cur, family_id)
            audit_log.record(cur, "auth.logout", actor_id=user_id, subject_id=user_id)

    def token_pair(self, user_id: str, role: str, refresh: str) -> TokenPairOut:
        """The pair for a session stored elsewhere (the second step of an MFA login)."""
        return self._pair(user_id, role, refresh)

    def _pair(self, user_id: str, role: str, refresh: str) -> TokenPairOut:
        return TokenPairOut(
            access_token=tokens.issue_access_token(self._secret, user_id, role),
            refresh_token=refresh,
            expires_in=tokens.ACCESS_TTL_SECONDS,
        )

    # -- users ----------------------------------------------------------------

    def get(self, principal: tokens.Principal, user_id: str) -> UserOut:
        """A user by id, for an admin or that user; anyone else gets 404."""
        if not is_uuid(user_id) or not (principal.is_admin or principal.id == user_id):
            raise NotFound("no such user")
        with self._pool.connection() as conn, conn.cursor() as cur:
            user = users.get(cur, user_id)
        if user is None:
            if user_id == principal.id:  # a valid token that outlived its account
                raise AccountGone()
            raise NotFound("no such user")
        return user

    def update_me(self, principal: tokens.Principal, body: UpdateMeIn) -> UserOut:
        with self._pool.connection() as conn, conn.cursor() as cur:
            current_hash = users.password_hash(cur, principal.id)
        if current_hash is None:
            raise AccountGone()
        if not self._passwords.verify(current_hash, body.current_password):
            raise Forbidden("current_password is incorrect")
        new_hash = self._passwords.hash(body.password) if body.password is not None else None
        with self._pool.transaction() as conn, conn.cursor() as cur:
            user = users.update(cur, principal.id, name=body.name, password_hash=new_hash)
            if new_hash is not None:
                # A new password ends every session: all refresh families die.
                refresh_tokens.revoke_user(cur, principal.id)
                audit_log.record(cur, "user.password_changed", actor_id=principal.id,
                             subject_id=principal.id)
        if user is None:
            raise AccountGone()
        return user

    def current_role(self, user_id: str) -> str | None:
        """The account's role now (None: no such account), whatever a token says."""
        with self._pool.connection() as conn, conn.cursor() as cur:
            return users.role_of(cur, user_id)

    def update(self, principal: tokens.Principal, user_id: str, body: UpdateUserIn) -> UserOut:
        if not is_uuid(user_id):
            raise NotFound("no such user")
        if body.role is not None and user_id == principal.id:
            raise Forbidden("an admin cannot change its own role")
        with self._pool.transaction() as conn, conn.cursor() as cur:
            if body.role is not None:
                self._check_role_change(cur, principal, user_id, body.role)
            old_role = users.role_of(cur, user_id, lock=True)
            if old_role is None:
                raise NotFound("no such user")
            user = users.update(cur, user_id, name=body.name, role=body.role)
            assert user is not None  # its row is locked by role_of above
            if body.role is not None and body.role != old_role:
                audit_log.record(cur, "user.role_changed", actor_id=principal.id,
                             subject_id=user_id, details={"from": old_role, "to": body.role})
        return user

    @staticmethod
    def _check_role_change(cur, principal: tokens.Principal, user_id: str, role: str) -> None:
        """Decide a role change with every admin row locked.

        Two admins demoting each other at once would otherwise both see two
        admins and leave none. With the admin set locked the second waits,
        then sees the first's result: its own authority is gone (403), or the
        target is the last admin (409).
        """
        admins = users.lock_admins(cur)
        if principal.id not in admins:
            raise Forbidden("this needs the admin role")
        if role != "admin" and user_id in admins and len(admins) == 1:
            raise Conflict("the last admin cannot be demoted")

    def list(self, limit: int, cursor: str | None) -> UserPage:
        after = decode_cursor(cursor, tuple[datetime, UUIDText]) if cursor else None
        with self._pool.connection() as conn, conn.cursor() as cur:
            rows = users.page(cur, limit, after)
        items, next_cursor = page(rows, limit, lambda u: (u.created_at, u.id))
        return UserPage(items=items, next_cursor=next_cursor)
