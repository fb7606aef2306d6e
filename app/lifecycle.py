"""Email verification and password reset: link tokens, mailed through the outbox.

A link token is 256 random bits (``secrets.token_urlsafe(32)``), shown only
in the mail; the database keeps its sha256 (app/queries/email_tokens.py).
The token and the mail that carries it are written in one transaction and
the delivery worker sends the mail later: a request never talks SMTP.

Reset-request answers the same for every address, known or not: the same
status and body, and the same work (one statement that inserts the token
and mail only when the address has an account, and an audit row either
way; app/queries/email_tokens.py), so neither the answer nor its timing
tells whether an account exists.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from app import emails
from app.config import MailSettings
from app.errors import AccountGone, BadRequest
from app.mail import templates
from app.queries import audit_log, email_tokens, mails, refresh_tokens, users
from app.ratelimit import Limit
from app.schemas.accounts import AccountOut

VERIFY_LIFETIME = timedelta(hours=24)
RESET_LIFETIME = timedelta(minutes=30)

# Mails cost the recipient's patience and our sender reputation: a few per
# address, more per client address (a shared NAT), per 10 minutes.
MAIL_PER_EMAIL = Limit("mail-email", 5, 600, fail_closed=True)
MAIL_PER_IP = Limit("mail-ip", 30, 600, fail_closed=True)
# Spending a token: guessing 256 bits is hopeless, this keeps it that way cheaply.
TOKEN_PER_IP = Limit("link-token-ip", 30, 60, fail_closed=True)

_BAD_TOKEN = "the token is invalid, used or expired"


def _new_token() -> tuple[str, bytes]:
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Lifecycle:
    def __init__(self, pool, passwords, limiter, mail: MailSettings, metrics):
        self._pool = pool
        self._passwords = passwords
        self._limiter = limiter
        self._mail = mail
        self._metrics = metrics

    def _link(self, page: str, token: str) -> str:
        return f"{self._mail.link_base}/{page}?token={token}"

    def _limit_mail(self, email_key: str, ip: str | None) -> None:
        self._limiter.hit(MAIL_PER_IP, ip or "unknown")
        self._limiter.hit(MAIL_PER_EMAIL, email_key)

    # -- email verification ---------------------------------------------------

    def request_verification(self, user_id: str, ip: str | None) -> None:
        """Queue a verification mail (none if the address is verified already)."""
        with self._pool.connection() as conn, conn.cursor() as cur:
            found = users.mail_identity(cur, user_id)
        if found is None:
            raise AccountGone()
        email, email_key, name, verified = found
        self._limit_mail(email_key, ip)
        if verified:
            return
        token, token_hash = _new_token()
        with self._pool.transaction() as conn, conn.cursor() as cur:
            email_tokens.insert(cur, user_id, email_tokens.VERIFY_EMAIL, email_key, token_hash,
                                VERIFY_LIFETIME)
            mails.enqueue(cur, user_id, email, templates.VERIFY_EMAIL,
                          {"name": name, "link": self._link("verify-email", token)})
            audit_log.record(cur, "user.email_verification_requested", actor_id=user_id,
                             subject_id=user_id, ip=ip)
        self._metrics.incr("mail.queued.verify_email")

    def verify(self, token: str, ip: str | None) -> AccountOut:
        with self._pool.transaction() as conn, conn.cursor() as cur:
            user_id = email_tokens.spend(cur, hash_token(token), email_tokens.VERIFY_EMAIL)
            if user_id is None:
                raise BadRequest(_BAD_TOKEN)
            user = users.mark_email_verified(cur, user_id)
            assert user is not None  # the token's row joined the user's
            audit_log.record(cur, "user.email_verified", actor_id=user_id, subject_id=user_id,
                             ip=ip)
        return user

    # -- password reset -------------------------------------------------------

    def request_reset(self, email: str, ip: str | None) -> None:
        email_key = emails.normalize(email)
        self._limit_mail(email_key, ip)
        token, token_hash = _new_token()
        with self._pool.transaction() as conn, conn.cursor() as cur:
            email_tokens.request_reset(cur, email_key, token_hash,
                                       self._link("reset-password", token), RESET_LIFETIME, ip)

    def reset(self, token: str, new_password: str, ip: str | None) -> None:
        token_hash = hash_token(token)
        # Checked before hashing (tens of milliseconds) so a wrong token is cheap.
        with self._pool.connection() as conn, conn.cursor() as cur:
            if email_tokens.live_owner(cur, token_hash, email_tokens.RESET_PASSWORD) is None:
                raise BadRequest(_BAD_TOKEN)
        new_hash = self._passwords.hash(new_password)
        with self._pool.transaction() as conn, conn.cursor() as cur:
            user_id = email_tokens.spend(cur, token_hash, email_tokens.RESET_PASSWORD)
            if user_id is None:  # spent by a concurrent request meanwhile
                raise BadRequest(_BAD_TOKEN)
            users.set_password(cur, user_id, new_hash)
            email_tokens.spend_all(cur, user_id, email_tokens.RESET_PASSWORD)
            families = refresh_tokens.revoke_user(cur, user_id)
            audit_log.record(cur, "user.password_reset", actor_id=user_id, subject_id=user_id,
                             ip=ip, details={"revoked_families": families})
        self._metrics.incr("auth.password_reset")
