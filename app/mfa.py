"""TOTP two-factor sign-in (RFC 6238, with pyotp): enrolment, recovery codes, the second step.

- Enrolment stores a new secret, sealed with PEREGRINE_DATA_KEY
  (app/sealing.py); it counts only once a code from it is confirmed, which
  also hands out ten recovery codes, shown that once and stored as sha256.
- A code is accepted for the current 30-second step or one either side
  (clocks drift), and only for a step later than the last one accepted,
  so a code cannot be replayed, not even within its window.
- A password login of an enrolled account gets a 401 ``mfa_required`` with
  an ``mfa_token`` (256 bits, five minutes, stored hashed, bound to the
  password as it was); POST /v1/auth/login/mfa with it and a code (or a
  recovery code, once each) opens the session. A token dies after
  MAX_FAILURES wrong codes, and codes are rate-limited per client and per
  account, so the million codes cannot be tried.
- Every change and every failed code is in the audit log; no secret, code
  or token ever is (nor in any log line).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from datetime import timedelta

import pyotp

from app import tokens
from app.errors import AccountGone, BadRequest, Conflict, Forbidden, Unauthorized, Unavailable
from app.queries import audit_log, mfa_challenges, recovery_codes, refresh_tokens, user_totp, users
from app.ratelimit import Limit
from app.schemas.accounts import TokenPairOut
from app.schemas.mfa import RecoveryCodesOut, TotpEnrolmentOut
from app.sealing import Sealer

ISSUER = "Peregrine"
CHALLENGE_LIFETIME = timedelta(minutes=5)
MAX_FAILURES = 5
RECOVERY_CODE_COUNT = 10
#: Steps either side of now a code is accepted for (RFC 6238 section 5.2).
WINDOW = 1

MFA_PER_IP = Limit("mfa-ip", 60, 60, fail_closed=True)
MFA_PER_ACCOUNT = Limit("mfa-account", 10, 300, fail_closed=True)

_NOT_CONFIGURED = "two-factor sign-in is not configured on this server"
_BAD_CHALLENGE = "the mfa_token is invalid, expired or used up: log in again"
_BAD_CODE = "the code is not valid"


def _hash(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def credentials_digest(password_hash: str) -> bytes:
    """What a challenge is bound to (app/queries/mfa_challenges.py computes the same)."""
    return _hash(password_hash)


def challenge_if_enrolled(cur, user_id: str, verified_hash: str) -> str | None:
    """The mfa_token a password login of this account must follow up, or None.

    Raises refresh_tokens.CredentialsChanged if the password changed after
    ``verified_hash`` was checked, as a one-step login would.
    """
    if not user_totp.is_active(cur, user_id):
        return None
    token = secrets.token_urlsafe(32)
    if not mfa_challenges.insert(cur, _hash(token), user_id, credentials_digest(verified_hash),
                                 CHALLENGE_LIFETIME):
        raise refresh_tokens.CredentialsChanged(user_id)
    return token


def matching_step(secret: str, code: str, last_step: int | None,
                  now: float | None = None) -> int | None:
    """The step within the window whose code ``code`` is, if later than ``last_step``."""
    digits = code.replace(" ", "")
    totp = pyotp.TOTP(secret)
    if len(digits) != totp.digits or not digits.isascii() or not digits.isdigit():
        return None
    current = int((time.time() if now is None else now) // totp.interval)
    for step in range(current - WINDOW, current + WINDOW + 1):
        if (last_step is None or step > last_step) and hmac.compare_digest(
                totp.generate_otp(step), digits):
            return step
    return None


def new_recovery_code() -> str:
    """80 random bits as four groups of four base32 letters: ``abcd-efgh-ijkl-mnop``."""
    letters = base64.b32encode(secrets.token_bytes(10)).decode().lower()
    return "-".join(letters[i:i + 4] for i in range(0, 16, 4))


def recovery_hash(code: str) -> bytes:
    """The stored form: case, spaces and dashes do not matter."""
    return _hash(code.lower().replace("-", "").replace(" ", ""))


class TwoFactor:
    def __init__(self, pool, passwords, limiter, data_key: bytes | None, accounts, metrics):
        self._pool = pool
        self._passwords = passwords
        self._limiter = limiter
        self._sealer = Sealer(data_key) if data_key is not None else None
        self._accounts = accounts
        self._metrics = metrics

    def _sealing(self) -> Sealer:
        if self._sealer is None:
            raise Unavailable(_NOT_CONFIGURED)
        return self._sealer

    def _check_password(self, user_id: str, password: str) -> None:
        with self._pool.connection() as conn, conn.cursor() as cur:
            current = users.password_hash(cur, user_id)
        if current is None:
            raise AccountGone()
        if not self._passwords.verify(current, password):
            raise Forbidden("current_password is incorrect")

    # -- enrolment ------------------------------------------------------------

    def enrol(self, user_id: str, current_password: str, ip: str | None) -> TotpEnrolmentOut:
        sealer = self._sealing()
        self._limiter.hit(MFA_PER_ACCOUNT, user_id)
        self._check_password(user_id, current_password)
        secret = pyotp.random_base32()  # 160 bits, as RFC 4226 recommends
        with self._pool.transaction() as conn, conn.cursor() as cur:
            user = users.get(cur, user_id)
            if user is None:
                raise AccountGone()
            if not user_totp.start(cur, user_id, sealer.seal(secret)):
                raise Conflict("two-factor sign-in is on already; turn it off first")
            audit_log.record(cur, "user.mfa_enrolment_started", actor_id=user_id,
                             subject_id=user_id, ip=ip, details={"method": "totp"})
        uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)
        return TotpEnrolmentOut(secret=secret, otpauth_uri=uri)

    def confirm(self, user_id: str, code: str, ip: str | None) -> RecoveryCodesOut:
        sealer = self._sealing()
        self._limiter.hit(MFA_PER_ACCOUNT, user_id)
        codes = [new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
        with self._pool.transaction() as conn, conn.cursor() as cur:
            found = user_totp.find(cur, user_id, lock=True)
            if found is None or found[1]:
                raise Conflict("no two-factor enrolment is waiting for a code")
            step = matching_step(sealer.open(found[0]), code, found[2])
            if step is not None:
                user_totp.use_step(cur, user_id, step)
                user_totp.confirm(cur, user_id)
                recovery_codes.replace(cur, user_id, [recovery_hash(c) for c in codes])
            audit_log.record(cur, "user.mfa_enabled" if step is not None
                             else "user.mfa_confirm_failed", actor_id=user_id,
                             subject_id=user_id, ip=ip, details={"method": "totp"})
        if step is None:
            raise BadRequest(_BAD_CODE)
        self._metrics.incr("auth.mfa.enabled")
        return RecoveryCodesOut(recovery_codes=codes)

    def disable(self, user_id: str, current_password: str, code: str, ip: str | None) -> None:
        self._sealing()
        self._limiter.hit(MFA_PER_ACCOUNT, user_id)
        self._check_password(user_id, current_password)
        with self._pool.transaction() as conn, conn.cursor() as cur:
            if not user_totp.is_active(cur, user_id):
                raise Conflict("two-factor sign-in is not on")
            kind = self._spend_code(cur, user_id, code)
            if kind is not None:
                user_totp.delete(cur, user_id)
                recovery_codes.delete(cur, user_id)
            audit_log.record(cur, "user.mfa_disabled" if kind else "user.mfa_disable_failed",
                             actor_id=user_id, subject_id=user_id, ip=ip,
                             details={"code": kind} if kind else {})
        if kind is None:
            raise Forbidden(_BAD_CODE)
        self._metrics.incr("auth.mfa.disabled")

    # -- the second step of a login -------------------------------------------

    def login(self, mfa_token: str, code: str, ip: str | None) -> TokenPairOut:
        self._sealing()
        self._limiter.hit(MFA_PER_IP, ip or "unknown")
        token_hash = _hash(mfa_token)
        refresh, refresh_hash = tokens.new_refresh_token()
        with self._pool.transaction() as conn, conn.cursor() as cur:
            found = mfa_challenges.open_for(cur, token_hash, MAX_FAILURES)
            if found is None:
                raise Unauthorized(_BAD_CHALLENGE)
            user_id, role, password_hash = found
            self._limiter.hit(MFA_PER_ACCOUNT, user_id)
            kind = self._spend_code(cur, user_id, code)
            if kind is None:
                failures = mfa_challenges.fail(cur, token_hash)
                audit_log.record(cur, "auth.mfa_failed", subject_id=user_id, ip=ip,
                                 details={"failures": failures})
            else:
                mfa_challenges.spend(cur, token_hash)
                refresh_tokens.create_family(cur, user_id, password_hash, refresh_hash,
                                             tokens.REFRESH_LIFETIME)
                audit_log.record(cur, "auth.login", actor_id=user_id, subject_id=user_id,
                                 ip=ip, details={"mfa": kind})
        if kind is None:
            self._metrics.incr("auth.mfa.fail")
            raise Unauthorized(_BAD_CODE)
        self._metrics.incr("auth.login.ok")
        return self._accounts.token_pair(user_id, role, refresh)

    def _spend_code(self, cur, user_id: str, code: str) -> str | None:
        """Accept a TOTP code or a recovery code once: ``"totp"``, ``"recovery_code"`` or None."""
        found = user_totp.find(cur, user_id, lock=True)
        if found is None or not found[1]:
            return None
        step = matching_step(self._sealing().open(found[0]), code, found[2])
        if step is not None and user_totp.use_step(cur, user_id, step):
            return "totp"
        if len(code) >= 16 and recovery_codes.spend(cur, user_id, recovery_hash(code)):
            left = recovery_codes.remaining(cur, user_id)
            audit_log.record(cur, "user.recovery_code_used", actor_id=user_id,
                             subject_id=user_id, details={"remaining": left})
            return "recovery_code"
        return None
